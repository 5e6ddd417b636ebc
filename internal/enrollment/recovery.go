package enrollment

import (
	"k8s.io/utils/ptr"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// IssueRecoveryCodes starts a new generation of n recovery codes on st: every code of an earlier generation
// is worthless from the write that records it.
func IssueRecoveryCodes(st *v1alpha1.VerificationState, n int32) {
	st.RecoveryGeneration++
	st.RecoveryCodes = n
	st.RecoveryCodesUsed = nil
}

// UseRecoveryCode records that code i of the current generation was used.
func UseRecoveryCode(st *v1alpha1.VerificationState, i int) {
	st.RecoveryCodesUsed = append(st.RecoveryCodesUsed, int32(i))
}

// UsedRecoveryCodes returns the used codes of the current generation as a bit set (bit i: code i).
func UsedRecoveryCodes(st *v1alpha1.VerificationState) uint64 {
	var used uint64
	for _, i := range st.RecoveryCodesUsed {
		if i >= 0 && i < 64 {
			used |= 1 << i
		}
	}
	return used
}

// RecoveryCodesLeft is how many codes of st's current generation are unused; nil when none were issued.
func RecoveryCodesLeft(st *v1alpha1.VerificationState) *int32 {
	if st == nil || st.RecoveryGeneration == 0 {
		return nil
	}
	left := max(st.RecoveryCodes-int32(len(st.RecoveryCodesUsed)), 0)
	return &left
}

// SetRecoveryCodesRemaining shows on the enrollment's status how many recovery codes its state leaves the
// user (none when the state is another key's). It reports whether status changed.
func SetRecoveryCodesRemaining(status *v1alpha1.UserEnrollmentStatus, st *v1alpha1.VerificationState) (changed bool) {
	var left *int32
	if st != nil && st.Key == status.SecretUID {
		left = RecoveryCodesLeft(st)
	}
	changed = !ptr.Equal(left, status.RecoveryCodesRemaining)
	status.RecoveryCodesRemaining = left
	return changed
}
