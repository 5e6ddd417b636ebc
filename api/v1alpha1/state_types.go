package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VerificationState is the hot state of one user's enrollment: what every decision reads and writes. It
// lives in a Lease (coordination.k8s.io) of its own, annotation AnnotationState, named by the user and policy
// (enrollment.Name) and controlled by the UserEnrollment, so that a decision costs one small protobuf write
// that nobody else watches, instead of a status update of the enrollment that every verifier replica and the
// manager would receive. The enrollment's status keeps what people read (the conditions) and the facts that
// change rarely (the key, the confirmation); the verifier writes it only on a transition.
type VerificationState struct {
	// key is the UID of the key Secret this state belongs to. State recorded for another key (before a key
	// was replaced, or for another enrollment of the same user) counts for nothing: it reads as fresh.
	// +required
	Key string `json:"key"`

	// failedAttempts counts consecutive wrong codes since the last success or unlock.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`

	// temporaryLockouts counts the throttled locks (those that end by themselves) since the last success or
	// administrator unlock. Once it reaches lockout.maxTemporaryLockouts, the next lock lasts until an
	// administrator unlocks it.
	// +optional
	TemporaryLockouts int32 `json:"temporaryLockouts,omitempty"`

	// lastFailureAt is when the last wrong code was received.
	// +optional
	LastFailureAt *metav1.Time `json:"lastFailureAt,omitempty"`

	// lockedAt is when the enrollment was locked. Absent when not locked.
	// +optional
	LockedAt *metav1.Time `json:"lockedAt,omitempty"`

	// lockedUntil is when the lock ends by itself. Absent while locked means only an administrator can
	// unlock (annotation twofactor.kube2fa.io/unlock).
	// +optional
	LockedUntil *metav1.Time `json:"lockedUntil,omitempty"`

	// lastSuccessAt is when a code was last accepted.
	// +optional
	LastSuccessAt *metav1.Time `json:"lastSuccessAt,omitempty"`

	// lastUsedStep is the TOTP time step of the last accepted code; only later steps are accepted.
	// +optional
	LastUsedStep *int64 `json:"lastUsedStep,omitempty"`

	// hotpCounter is the next HOTP counter value to accept.
	// +optional
	HOTPCounter *int64 `json:"hotpCounter,omitempty"`

	// recoveryGeneration counts the sets of recovery codes issued for this key (0: none yet). The codes are
	// derived from the key, the generation and their index (see otp.RecoveryCodes), so no code is stored
	// anywhere; a new generation makes every earlier code worthless.
	// +optional
	RecoveryGeneration int32 `json:"recoveryGeneration,omitempty"`

	// recoveryCodes is how many codes the current generation has.
	// +optional
	RecoveryCodes int32 `json:"recoveryCodes,omitempty"`

	// recoveryCodesUsed are the indexes of the current generation's codes used already.
	// +optional
	// +listType=set
	RecoveryCodesUsed []int32 `json:"recoveryCodesUsed,omitempty"`
}
