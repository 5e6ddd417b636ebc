package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyReference names a TwoFactorPolicy in the same namespace.
type PolicyReference struct {
	// name is the name of the TwoFactorPolicy.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// UserEnrollmentSpec names a user and the policy under which they prove a second factor.
// +kubebuilder:validation:XValidation:rule="has(self.method) == has(oldSelf.method) && (!has(self.method) || self.method == oldSelf.method)",message="method is immutable",fieldPath=".method"
type UserEnrollmentSpec struct {
	// policyRef names the TwoFactorPolicy (same namespace) this enrollment belongs to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="policyRef is immutable"
	PolicyRef PolicyReference `json:"policyRef"`

	// user is the application's immutable, canonical identifier of the user (a subject ID, not the login
	// string as typed), exactly as the application sends it to the verifier. Immutable. Control characters,
	// bidirectional controls and U+FFFD are refused: no sane identity holds them.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="user is immutable"
	// +kubebuilder:validation:XValidation:rule="!self.matches(r'[\\x{0}-\\x{1F}\\x{7F}-\\x{9F}\\x{200E}\\x{200F}\\x{202A}-\\x{202E}\\x{2066}-\\x{2069}\\x{FFFD}]')",message="user must not hold control characters, bidirectional controls or U+FFFD"
	User string `json:"user"`

	// method is TOTP or HOTP. Defaults to the first method the policy allows. Immutable.
	// +optional
	Method Method `json:"method,omitempty"`
}

// UserEnrollmentStatus holds the enrollment's conditions and the facts that change rarely: its key and its
// confirmation. The manager writes the provisioning facts; the verifier writes the confirmation and, on a
// transition, the Enrolled and Locked conditions; both with optimistic concurrency. Failures, locks and what
// makes codes single-use are in the enrollment's state Lease (VerificationState), the one source of those
// facts; the Locked condition shows them.
type UserEnrollmentStatus struct {
	// conditions holds Ready (a key is provisioned and the verifier can use it), Enrolled (confirmed with
	// a first code) and Locked (too many wrong codes).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type" protobuf:"bytes,1,rep,name=conditions"`

	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// secretName is the name of the Secret holding this enrollment's key.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// secretUID is the UID of the Secret holding the key the confirmation and the verification state belong
	// to. When the Secret is replaced (deleted by hand and re-created with a new key), the enrollment is
	// pending again and its verification state starts afresh.
	// +optional
	SecretUID string `json:"secretUID,omitempty"`

	// method is the method in use: spec.method, or the policy's default when spec.method is empty.
	// +optional
	Method Method `json:"method,omitempty"`

	// confirmedAt is when the first valid code confirmed the enrollment. Absent while pending.
	// +optional
	ConfirmedAt *metav1.Time `json:"confirmedAt,omitempty"`

	// recoveryCodesRemaining is how many of the recovery codes the user holds are unused, as the state
	// Lease counts them; absent while none were issued.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RecoveryCodesRemaining *int32 `json:"recoveryCodesRemaining,omitempty"`

	// lastHandledUnlock is the value of the unlock annotation last acted on: the manager cleared the lock in
	// the state Lease for it.
	// +optional
	LastHandledUnlock string `json:"lastHandledUnlock,omitempty"`

	// lastHandledReissue is the value of the reissue annotation last acted on.
	// +optional
	LastHandledReissue string `json:"lastHandledReissue,omitempty"`
}

// UserEnrollment is one user's second factor under a TwoFactorPolicy. Deleting it removes the key: the
// recovery path when a user loses their authenticator.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ue,categories=kube2fa
// +kubebuilder:selectablefield:JSONPath=`.spec.policyRef.name`
// +kubebuilder:selectablefield:JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.policyRef.name`
// +kubebuilder:printcolumn:name="Method",type=string,JSONPath=`.status.method`
// +kubebuilder:printcolumn:name="Enrolled",type=string,JSONPath=`.status.conditions[?(@.type=="Enrolled")].status`
// +kubebuilder:printcolumn:name="Locked",type=string,JSONPath=`.status.conditions[?(@.type=="Locked")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Recovery",type=integer,JSONPath=`.status.recoveryCodesRemaining`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 249",message="enrollment name must be at most 249 characters: its Secret is named <name>-otp"
type UserEnrollment struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the user and the policy.
	// +required
	Spec UserEnrollmentSpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status UserEnrollmentStatus `json:"status,omitempty"`
}

// UserEnrollmentList is a list of UserEnrollment.
// +kubebuilder:object:root=true
type UserEnrollmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UserEnrollment `json:"items"`
}
