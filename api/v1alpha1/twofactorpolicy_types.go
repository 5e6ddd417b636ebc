package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode says whether users are asked for a second factor.
// +kubebuilder:validation:Enum=Disabled;Optional;Enforced
type Mode string

const (
	// ModeDisabled: nobody is asked and nobody can enroll; earlier enrollments are kept but not asked.
	ModeDisabled Mode = "Disabled"
	// ModeOptional: users may enroll; only users with a confirmed enrollment are asked.
	ModeOptional Mode = "Optional"
	// ModeEnforced: every user must enroll and is asked.
	ModeEnforced Mode = "Enforced"
)

// Method is a one-time-code method.
// +kubebuilder:validation:Enum=TOTP;HOTP
type Method string

const (
	// MethodTOTP is the time-based one-time password of RFC 6238.
	MethodTOTP Method = "TOTP"
	// MethodHOTP is the counter-based one-time password of RFC 4226.
	MethodHOTP Method = "HOTP"
)

// Algorithm is the HMAC hash function of a one-time code.
// +kubebuilder:validation:Enum=SHA1;SHA256;SHA512
type Algorithm string

const (
	// AlgorithmSHA1 is HMAC-SHA-1, RFC 4226's own and the only one every authenticator app supports.
	AlgorithmSHA1 Algorithm = "SHA1"
	// AlgorithmSHA256 is HMAC-SHA-256, which RFC 6238 allows.
	AlgorithmSHA256 Algorithm = "SHA256"
	// AlgorithmSHA512 is HMAC-SHA-512, which RFC 6238 allows.
	AlgorithmSHA512 Algorithm = "SHA512"
)

// TwoFactorPolicySpec is what a platform team declares for a set of users.
// +kubebuilder:validation:XValidation:rule="self.mode == 'Disabled' || (has(self.methods) && size(self.methods) > 0)",message="methods must list at least one of TOTP, HOTP unless mode is Disabled",fieldPath=".methods"
type TwoFactorPolicySpec struct {
	// mode says whether users are asked for a code: Disabled, Optional or Enforced.
	// +required
	Mode Mode `json:"mode"`

	// methods lists the one-time-code methods users may enroll with; the first is the default.
	// Required unless mode is Disabled.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	Methods []Method `json:"methods,omitempty"`

	// issuer is the label authenticator apps show next to the account. Defaults to the policy name.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="!self.contains(':')",message="issuer must not contain ':'"
	Issuer string `json:"issuer,omitempty"`

	// totp holds the parameters of new TOTP enrollments (RFC 6238).
	// +optional
	TOTP *TOTPSettings `json:"totp,omitempty"`

	// hotp holds the parameters of new HOTP enrollments (RFC 4226).
	// +optional
	HOTP *HOTPSettings `json:"hotp,omitempty"`

	// secretBytes is the size of each generated key in bytes. Defaults to 20 (160 bits).
	// +optional
	// +kubebuilder:validation:Minimum=16
	// +kubebuilder:validation:Maximum=64
	SecretBytes int32 `json:"secretBytes,omitempty"`

	// lockout says when wrong codes lock an enrollment, and for how long.
	// +optional
	Lockout *LockoutSettings `json:"lockout,omitempty"`

	// selfEnrollment says whether users may enroll themselves through the verifier, and how long an
	// enrollment they started may wait for its first code.
	// +optional
	SelfEnrollment *SelfEnrollmentSettings `json:"selfEnrollment,omitempty"`

	// recoveryCodes is how many single-use recovery codes each enrollment gets when it is confirmed, for
	// when its authenticator is lost; 0 turns them off (and refuses the codes already given). Defaults to 10.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	RecoveryCodes *int32 `json:"recoveryCodes,omitempty"`
}

// SelfEnrollmentMode says who creates enrollments.
// +kubebuilder:validation:Enum=Open;AdminOnly
type SelfEnrollmentMode string

const (
	// SelfEnrollmentOpen: a user without an enrollment may enroll through the verifier (trust on first use:
	// whoever holds the password when a user first enrolls holds the second factor).
	SelfEnrollmentOpen SelfEnrollmentMode = "Open"
	// SelfEnrollmentAdminOnly: only administrators create enrollments and hand out the QR code out of band;
	// the verifier creates none and serves no provisioning material.
	SelfEnrollmentAdminOnly SelfEnrollmentMode = "AdminOnly"
)

// SelfEnrollmentSettings govern the enrollments the verifier creates.
type SelfEnrollmentSettings struct {
	// mode is Open (the default) or AdminOnly.
	// +optional
	Mode SelfEnrollmentMode `json:"mode,omitempty"`

	// pendingExpirySeconds is how long a self-enrollment may stay unconfirmed before the manager deletes
	// it, with its key. Enrollments an administrator created never expire by themselves. Defaults to
	// 86400 (a day).
	// +optional
	// +kubebuilder:validation:Minimum=60
	// +kubebuilder:validation:Maximum=2592000
	PendingExpirySeconds int32 `json:"pendingExpirySeconds,omitempty"`
}

// TOTPSettings are the parameters of time-based codes. Changing them affects only new enrollments.
type TOTPSettings struct {
	// algorithm is the HMAC hash function. Defaults to SHA1, the only one every authenticator app supports.
	// +optional
	Algorithm Algorithm `json:"algorithm,omitempty"`

	// digits is the code length: 6 or 8. Defaults to 6.
	// +optional
	// +kubebuilder:validation:Enum=6;8
	Digits int32 `json:"digits,omitempty"`

	// periodSeconds is how long each code is valid. Defaults to 30.
	// +optional
	// +kubebuilder:validation:Minimum=15
	// +kubebuilder:validation:Maximum=300
	PeriodSeconds int32 `json:"periodSeconds,omitempty"`

	// skewSteps is how many periods before and after the current one are accepted, for clock drift.
	// Applies to every enrollment at once. Defaults to 1.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	SkewSteps *int32 `json:"skewSteps,omitempty"`
}

// HOTPSettings are the parameters of counter-based codes. Algorithm and digits affect only new enrollments.
type HOTPSettings struct {
	// algorithm is the HMAC hash function. Defaults to SHA1.
	// +optional
	Algorithm Algorithm `json:"algorithm,omitempty"`

	// digits is the code length: 6 or 8. Defaults to 6.
	// +optional
	// +kubebuilder:validation:Enum=6;8
	Digits int32 `json:"digits,omitempty"`

	// lookAhead is how many counter values past the stored one are accepted, for codes generated but
	// never used. Defaults to 4.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	LookAhead *int32 `json:"lookAhead,omitempty"`

	// resyncWindow lets a user whose token drifted past lookAhead move the counter with two consecutive
	// codes found within this many counter values past the stored one (POST /v1/enrollments/{user}/resync).
	// 0 (the default) turns resynchronisation off.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	ResyncWindow int32 `json:"resyncWindow,omitempty"`
}

// LockoutSettings say when wrong codes lock an enrollment. They apply to every enrollment at once.
type LockoutSettings struct {
	// maxFailures is the number of consecutive wrong codes that locks an enrollment. Defaults to 3.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxFailures int32 `json:"maxFailures,omitempty"`

	// throttleSeconds is how long a lock lasts. 0 (the default) keeps the enrollment locked until an
	// administrator unlocks it with the twofactor.kube2fa.io/unlock annotation.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=604800
	ThrottleSeconds *int32 `json:"throttleSeconds,omitempty"`

	// maxTemporaryLockouts bounds the guessing budget over time when throttleSeconds is set: after this
	// many locks that ended by themselves without a success in between, the next lock lasts until an
	// administrator unlocks it. 0 means no bound. Defaults to 10.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	MaxTemporaryLockouts *int32 `json:"maxTemporaryLockouts,omitempty"`
}

// EnrollmentCounts summarise the enrollments of a policy: the policy-level "who has 2FA".
type EnrollmentCounts struct {
	// total is the number of UserEnrollments that name this policy.
	// +required
	// +kubebuilder:validation:Minimum=0
	Total int32 `json:"total"`
	// confirmed is the number of enrollments confirmed with a first code.
	// +required
	// +kubebuilder:validation:Minimum=0
	Confirmed int32 `json:"confirmed"`
	// pending is the number of enrollments with a key, waiting for their first code.
	// +required
	// +kubebuilder:validation:Minimum=0
	Pending int32 `json:"pending"`
	// locked is the number of enrollments locked by wrong codes.
	// +required
	// +kubebuilder:validation:Minimum=0
	Locked int32 `json:"locked"`
	// selfEnrolledPending is the number of enrollments that self-enrollment created and no first code has
	// confirmed yet, with or without a key: what a verifier's --max-pending bounds.
	// +optional
	// +kubebuilder:validation:Minimum=0
	SelfEnrolledPending int32 `json:"selfEnrolledPending,omitempty"`
}

// TwoFactorPolicyStatus is what the manager observed and did for a policy.
type TwoFactorPolicyStatus struct {
	// conditions holds Ready, True once the verifier ConfigMap holds the current spec.
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

	// verifierConfigMap is the name of the ConfigMap holding the resolved policy the verifier obeys.
	// +optional
	VerifierConfigMap string `json:"verifierConfigMap,omitempty"`

	// enrollments counts the enrollments of this policy by state.
	// +optional
	Enrollments *EnrollmentCounts `json:"enrollments,omitempty"`
}

// TwoFactorPolicy declares whether and how users of an application prove a second factor.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tfp,categories=kube2fa
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Methods",type=string,JSONPath=`.spec.methods`
// +kubebuilder:printcolumn:name="Enrolled",type=integer,JSONPath=`.status.enrollments.confirmed`
// +kubebuilder:printcolumn:name="Locked",type=integer,JSONPath=`.status.enrollments.locked`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="policy name must be at most 63 characters: it is used as a label value"
type TwoFactorPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired policy.
	// +required
	Spec TwoFactorPolicySpec `json:"spec"`

	// status is the observed state.
	// +optional
	Status TwoFactorPolicyStatus `json:"status,omitempty"`
}

// TwoFactorPolicyList is a list of TwoFactorPolicy.
// +kubebuilder:object:root=true
type TwoFactorPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TwoFactorPolicy `json:"items"`
}
