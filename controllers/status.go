package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// conflictRetry is how soon a pass whose status write lost a race runs again.
const conflictRetry = 100 * time.Millisecond

// recordStatus is how every reconciler writes status, and its one conflict policy. When changed, it writes
// obj's status with one Update carrying the resourceVersion the pass read: another writer (the verifier
// shares enrollment status; a person or a GitOps tool edits the object) makes it fail rather than be
// overwritten, and the pass then runs again shortly on what the other wrote, whatever predicates filter the
// object's events. It returns whether the status is recorded, with the pass's result and error as they
// stand after the write.
func recordStatus(ctx context.Context, c client.Client, obj client.Object, changed bool,
	res ctrl.Result, passErr error) (recorded bool, _ ctrl.Result, _ error) {
	if !changed {
		return true, res, passErr
	}
	err := c.Status().Update(ctx, obj)
	switch {
	case err == nil:
		return true, res, passErr
	case !apierrors.IsConflict(err):
		return false, ctrl.Result{}, errors.Join(passErr, fmt.Errorf("updating %T status: %w", obj, err))
	case passErr != nil:
		return false, ctrl.Result{}, passErr
	default:
		return false, ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
}

// readyReasonIs reports whether the Ready condition among conditions has reason: Events announce a reason
// once, when the condition turns to it.
func readyReasonIs(conditions []metav1.Condition, reason string) bool {
	c := meta.FindStatusCondition(conditions, v1alpha1.ConditionReady)
	return c != nil && c.Reason == reason
}
