package enrollment

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// SetConditions derives the Enrolled and Locked conditions from the status facts. The manager and the
// verifier both call it before writing status, so one write carries facts and conditions together. Ready is
// the manager's alone: it depends on the policy and the Secret, not on verification.
func SetConditions(st *v1alpha1.UserEnrollmentStatus, generation int64, now time.Time) {
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
	meta.SetStatusCondition(&st.Conditions, enrolled)

	locked := metav1.Condition{Type: v1alpha1.ConditionLocked, ObservedGeneration: generation}
	switch {
	case !IsLocked(st, now):
		locked.Status, locked.Reason = metav1.ConditionFalse, v1alpha1.ReasonNotLocked
		locked.Message = "Accepting codes"
	case st.LockedUntil == nil:
		locked.Status, locked.Reason = metav1.ConditionTrue, v1alpha1.ReasonTooManyFailures
		locked.Message = fmt.Sprintf("Locked after %d wrong codes until an administrator unlocks it", st.FailedAttempts)
		if st.TemporaryLockouts > 0 {
			locked.Message += fmt.Sprintf(" (after %d temporary lockouts without a success)", st.TemporaryLockouts)
		}
	default:
		locked.Status, locked.Reason = metav1.ConditionTrue, v1alpha1.ReasonTooManyFailures
		locked.Message = fmt.Sprintf("Locked after %d wrong codes until %s", st.FailedAttempts,
			st.LockedUntil.UTC().Format(time.RFC3339))
	}
	meta.SetStatusCondition(&st.Conditions, locked)
}

// Count summarises enrollments by the conditions clients see, for a policy's status.
func Count(items []v1alpha1.UserEnrollment) v1alpha1.EnrollmentCounts {
	c := v1alpha1.EnrollmentCounts{Total: int32(len(items))}
	for i := range items {
		conds := items[i].Status.Conditions
		switch {
		case meta.IsStatusConditionTrue(conds, v1alpha1.ConditionEnrolled):
			c.Confirmed++
		case meta.IsStatusConditionTrue(conds, v1alpha1.ConditionReady):
			c.Pending++
		}
		if meta.IsStatusConditionTrue(conds, v1alpha1.ConditionLocked) {
			c.Locked++
		}
	}
	return c
}
