package enrollment

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// SetEnrolled derives the Enrolled condition from the status facts: the key and its confirmation. It reports
// whether the condition changed.
func SetEnrolled(st *v1alpha1.UserEnrollmentStatus, generation int64) (changed bool) {
	enrolled := metav1.Condition{Type: v1alpha1.ConditionEnrolled, ObservedGeneration: generation}
	switch {
	case st.ConfirmedAt != nil:
		enrolled.Status, enrolled.Reason = metav1.ConditionTrue, v1alpha1.ReasonConfirmed
		enrolled.Message = "Confirmed with a first valid code"
	case st.SecretUID != "":
		enrolled.Status, enrolled.Reason = metav1.ConditionFalse, v1alpha1.ReasonPendingConfirmation
		enrolled.Message = "Waiting for a first valid code"
	default:
		enrolled.Status, enrolled.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoKey
		enrolled.Message = "No key has been provisioned"
	}
	return meta.SetStatusCondition(&st.Conditions, enrolled)
}

// SetLocked derives the Locked condition from the verification state at now (nil: none recorded, not
// locked). The condition is the state's view for people and tools; the state Lease is the source. It
// reports whether the condition changed.
func SetLocked(st *v1alpha1.UserEnrollmentStatus, state *v1alpha1.VerificationState, generation int64, now time.Time) (changed bool) {
	locked := metav1.Condition{Type: v1alpha1.ConditionLocked, ObservedGeneration: generation}
	switch {
	case state == nil || state.Key != st.SecretUID || !IsLocked(state, now):
		locked.Status, locked.Reason = metav1.ConditionFalse, v1alpha1.ReasonNotLocked
		locked.Message = "Accepting codes"
	case state.LockedUntil == nil:
		locked.Status, locked.Reason = metav1.ConditionTrue, v1alpha1.ReasonTooManyFailures
		locked.Message = fmt.Sprintf("Locked after %d wrong codes until an administrator unlocks it", state.FailedAttempts)
		if state.TemporaryLockouts > 0 {
			locked.Message += fmt.Sprintf(" (after %d temporary lockouts without a success)", state.TemporaryLockouts)
		}
	default:
		locked.Status, locked.Reason = metav1.ConditionTrue, v1alpha1.ReasonTooManyFailures
		locked.Message = fmt.Sprintf("Locked after %d wrong codes until %s", state.FailedAttempts,
			state.LockedUntil.UTC().Format(time.RFC3339))
	}
	return meta.SetStatusCondition(&st.Conditions, locked)
}

// Project derives what status shows of the verification state (the Enrolled and Locked conditions, the
// recovery codes left) at now, recording first, with confirm, that the state's key was confirmed at now. It
// reports whether status changed: whether the view needs a write.
func Project(status *v1alpha1.UserEnrollmentStatus, state *v1alpha1.VerificationState, confirm bool, generation int64, now time.Time) (changed bool) {
	if confirm {
		changed = Confirm(status, now)
	}
	changed = SetEnrolled(status, generation) || changed
	changed = SetLocked(status, state, generation, now) || changed
	return SetRecoveryCodesRemaining(status, state) || changed
}

// Count summarises enrollments by the conditions clients see, for a policy's status.
func Count(items []v1alpha1.UserEnrollment) v1alpha1.EnrollmentCounts {
	var c v1alpha1.EnrollmentCounts
	for i := range items {
		c = AddCounts(c, CountOf(&items[i]), 1)
	}
	return c
}

// CountOf is what one enrollment adds to its policy's counts.
func CountOf(e *v1alpha1.UserEnrollment) v1alpha1.EnrollmentCounts {
	c := v1alpha1.EnrollmentCounts{Total: 1}
	conds := e.Status.Conditions
	switch {
	case meta.IsStatusConditionTrue(conds, v1alpha1.ConditionEnrolled):
		c.Confirmed = 1
	case meta.IsStatusConditionTrue(conds, v1alpha1.ConditionReady):
		c.Pending = 1
	}
	if meta.IsStatusConditionTrue(conds, v1alpha1.ConditionLocked) {
		c.Locked = 1
	}
	if e.Labels[v1alpha1.LabelSelfEnrolled] == "true" && e.Status.ConfirmedAt == nil && e.DeletionTimestamp.IsZero() {
		c.SelfEnrolledPending = 1
	}
	return c
}

// AddCounts returns a plus sign times b (sign 1 or -1).
func AddCounts(a, b v1alpha1.EnrollmentCounts, sign int32) v1alpha1.EnrollmentCounts {
	return v1alpha1.EnrollmentCounts{
		Total:               a.Total + sign*b.Total,
		Confirmed:           a.Confirmed + sign*b.Confirmed,
		Pending:             a.Pending + sign*b.Pending,
		Locked:              a.Locked + sign*b.Locked,
		SelfEnrolledPending: a.SelfEnrolledPending + sign*b.SelfEnrolledPending,
	}
}
