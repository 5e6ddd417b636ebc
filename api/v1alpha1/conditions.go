package v1alpha1

// Condition types.
const (
	// ConditionReady is the summary condition of both kinds. On a TwoFactorPolicy: the verifier ConfigMap
	// holds the current spec. On a UserEnrollment: a key is provisioned and the verifier can use it.
	ConditionReady = "Ready"
	// ConditionEnrolled on a UserEnrollment is True once a first valid code confirmed the key.
	ConditionEnrolled = "Enrolled"
	// ConditionLocked on a UserEnrollment is True while wrong codes keep it locked.
	ConditionLocked = "Locked"
)

// Condition reasons.
const (
	// ReasonReconciled: the policy's verifier ConfigMap is current.
	ReasonReconciled = "Reconciled"
	// ReasonKeyProvisioned: the enrollment's Secret holds its key.
	ReasonKeyProvisioned = "KeyProvisioned"
	// ReasonPolicyNotFound: the referenced TwoFactorPolicy does not exist.
	ReasonPolicyNotFound = "PolicyNotFound"
	// ReasonMethodNotAllowed: the enrollment's method is not among the policy's methods.
	ReasonMethodNotAllowed = "MethodNotAllowed"
	// ReasonPolicyDisabled: the policy is Disabled, so a new enrollment gets no key.
	ReasonPolicyDisabled = "PolicyDisabled"
	// ReasonDuplicateUser: an older enrollment exists for the same user under the same policy.
	ReasonDuplicateUser = "DuplicateUser"
	// ReasonKeyLost: the Secret holding the key of a confirmed enrollment is gone (or another stands in its
	// place). Codes are refused until an administrator deletes the enrollment or sets the reissue annotation.
	ReasonKeyLost = "KeyLost"
	// ReasonSecretConflict: a Secret with the enrollment's Secret name exists and is not ours.
	ReasonSecretConflict = "SecretConflict"
	// ReasonConfigMapConflict: a ConfigMap with the policy's verifier ConfigMap name exists and is not ours.
	ReasonConfigMapConflict = "ConfigMapConflict"
	// ReasonConfigMapFailed: the policy's verifier ConfigMap could not be read or written; the manager retries.
	ReasonConfigMapFailed = "ConfigMapFailed"

	// ReasonConfirmed: a first valid code confirmed the enrollment.
	ReasonConfirmed = "Confirmed"
	// ReasonPendingConfirmation: the key exists; the user has not yet sent a first valid code.
	ReasonPendingConfirmation = "PendingConfirmation"
	// ReasonNoKey: no key has been provisioned yet.
	ReasonNoKey = "NoKey"

	// ReasonTooManyFailures: maxFailures consecutive wrong codes locked the enrollment.
	ReasonTooManyFailures = "TooManyFailures"
	// ReasonNotLocked: the enrollment accepts codes.
	ReasonNotLocked = "NotLocked"
)

// Event reasons, emitted by the manager and the verifier on the transitions people care about.
const (
	// EventReasonEnrolled (Normal, verifier): a first valid code confirmed the enrollment.
	EventReasonEnrolled = "Enrolled"
	// EventReasonLockedOut (Warning, verifier): wrong codes locked the enrollment.
	EventReasonLockedOut = "LockedOut"
	// EventReasonUnlocked (Normal, manager): the unlock annotation cleared a lock and the failures.
	EventReasonUnlocked = "Unlocked"
	// EventReasonLockExpired (Normal, manager): a lock ended after its throttle time.
	EventReasonLockExpired = "LockExpired"
	// EventReasonKeyReplaced (Warning, manager): the Secret was replaced with a new key; confirm again.
	EventReasonKeyReplaced = "KeyReplaced"
	// EventReasonConfigMapNotTrusted (Warning, verifier, on the policy): the policy's ConfigMap is not
	// controlled by the policy or holds content the CRD does not allow; the verifier refuses every request.
	EventReasonConfigMapNotTrusted = "ConfigMapNotTrusted"
	// EventReasonKeyLost (Warning, manager): a confirmed enrollment's key Secret is gone; codes are refused.
	EventReasonKeyLost = "KeyLost"
	// EventReasonSelfEnrolled (Normal, verifier): the verifier created the enrollment when its user
	// self-enrolled. Under trust on first use, a takeover of a never-enrolled account looks like this.
	EventReasonSelfEnrolled = "SelfEnrolled"
	// EventReasonExpired (Normal, manager): a self-enrollment never confirmed within the policy's
	// selfEnrollment.pendingExpirySeconds was deleted with its key.
	EventReasonExpired = "Expired"
	// EventReasonClockSkew (Warning, verifier, on the policy): a verifier replica's clock is further from
	// the API server's than the TOTP window absorbs; it refuses TOTP codes until its clock is fixed.
	EventReasonClockSkew = "ClockSkew"
	// EventReasonResynchronized (Normal, verifier): two consecutive HOTP codes moved the counter.
	EventReasonResynchronized = "Resynchronized"
	// EventReasonRecoveryCodeUsed (Warning, verifier): a recovery code stood in for a code at login: the
	// user lost their authenticator, or someone holds their codes. The message says how many are left.
	EventReasonRecoveryCodeUsed = "RecoveryCodeUsed"
	// EventReasonRecoveryCodesRegenerated (Normal, verifier): a valid code bought a new set of recovery codes.
	EventReasonRecoveryCodesRegenerated = "RecoveryCodesRegenerated"
	// EventReasonNoQRCode (Normal, manager): the key was provisioned without a QR code, because its
	// provisioning URI (a very long user) does not fit in one; the URI and the key are in the Secret.
	EventReasonNoQRCode = "NoQRCode"
)

// Labels and annotations kube2fa reads or writes.
const (
	// LabelManagedBy marks the Secrets kube2fa owns; the manager's cache holds only these.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on kube2fa's objects.
	ManagedByValue = "kube2fa"
	// LabelPolicy names the policy of an enrollment Secret or verifier ConfigMap, for label selection.
	LabelPolicy = "twofactor.kube2fa.io/policy"
	// LabelSelfEnrolled marks the UserEnrollments the verifier created when their users self-enrolled (value
	// "true"); only these expire when never confirmed.
	LabelSelfEnrolled = "twofactor.kube2fa.io/self-enrolled"
	// AnnotationUnlock on a UserEnrollment: any new value unlocks it and resets its failures.
	AnnotationUnlock = "twofactor.kube2fa.io/unlock"
	// AnnotationReissue on a UserEnrollment whose confirmed key was lost: any new value issues a new key and
	// makes the enrollment pending again. A value set while the key is not lost is consumed and does nothing.
	AnnotationReissue = "twofactor.kube2fa.io/reissue"
	// AnnotationProvenance on an enrollment Secret: the manager's HMAC over the Secret, which proves that the
	// manager created it (see render.Provenance).
	AnnotationProvenance = "twofactor.kube2fa.io/provenance"
	// AnnotationConfigHash on the verifier ConfigMap: sha256 of its content.
	AnnotationConfigHash = "twofactor.kube2fa.io/config-hash"
	// AnnotationState on an enrollment's state Lease: its VerificationState, as JSON.
	AnnotationState = "twofactor.kube2fa.io/state"
	// SecretTypeOTP is the type of enrollment Secrets.
	SecretTypeOTP = "twofactor.kube2fa.io/otp"
)
