package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{ControllerManager: true}, &env)
}

var ctx = context.Background()

func startManager(t *testing.T) (stop func()) {
	return env.StartManager(t, controllers.Options{MaxConcurrentReconciles: 4})
}

func createPolicy(t *testing.T, ns, name string, spec v1alpha1.TwoFactorPolicySpec) *v1alpha1.TwoFactorPolicy {
	t.Helper()
	p := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatalf("creating policy: %v", err)
	}
	return p
}

func createEnrollment(t *testing.T, ns, name, policy, user string) *v1alpha1.UserEnrollment {
	t.Helper()
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: policy}, User: user}}
	if err := env.Client.Create(ctx, e); err != nil {
		t.Fatalf("creating enrollment: %v", err)
	}
	return e
}

func enforcedTOTP() v1alpha1.TwoFactorPolicySpec {
	return v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}
}

// annotate sets an annotation on an enrollment, as `kubectl annotate --overwrite` does.
func annotate(t *testing.T, ns, name, key, value string) {
	t.Helper()
	e := getEnrollment(t, ns, name)
	patch := client.MergeFrom(e.DeepCopy())
	metav1.SetMetaDataAnnotation(&e.ObjectMeta, key, value)
	if err := env.Client.Patch(ctx, e, patch); err != nil {
		t.Fatal(err)
	}
}

func getEnrollment(t *testing.T, ns, name string) *v1alpha1.UserEnrollment {
	t.Helper()
	e := &v1alpha1.UserEnrollment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, e); err != nil {
		t.Fatalf("getting enrollment: %v", err)
	}
	return e
}

// waitCondition waits until the enrollment's condition has status and reason (any reason when empty), for
// its current generation.
func waitCondition(t *testing.T, ns, name, condType string, status metav1.ConditionStatus, reason string) *v1alpha1.UserEnrollment {
	t.Helper()
	var e v1alpha1.UserEnrollment
	testenv.EventuallyErr(t, fmt.Sprintf("%s %s=%s %s", name, condType, status, reason), func() (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &e); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(e.Status.Conditions, condType)
		return c != nil && c.Status == status && (reason == "" || c.Reason == reason) &&
			c.ObservedGeneration == e.Generation && e.Status.ObservedGeneration == e.Generation, nil
	})
	return &e
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("getting secret %s: %v", name, err)
	}
	return s
}

// recordAttempts plays the verifier: it applies n attempts to the enrollment's status through the shared
// state machine and writes them the way the verifier does (one update with the resourceVersion read).
func recordAttempts(t *testing.T, ns, name string, s enrollment.Settings, n int, right bool) {
	t.Helper()
	recordAttemptsAt(t, ns, name, s, n, right, time.Now)
}

// recordAttemptsAt is recordAttempts at the times now tells: each attempt as the verifier records it, in
// the user's state Lease, and the enrollment's conditions when they change.
func recordAttemptsAt(t *testing.T, ns, name string, s enrollment.Settings, n int, right bool, now func() time.Time) {
	t.Helper()
	for range n {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			e := getEnrollment(t, ns, name)
			lease, recorded := stateLease(t, e)
			st := enrollment.StateOf(recorded, e.Status.SecretUID)
			at := now()
			enrollment.Attempt(&st, s, at, func() enrollment.Verdict {
				if right {
					return enrollment.Right
				}
				return enrollment.Wrong
			})
			var err error
			if lease == nil {
				if lease, err = render.StateLease(e, st); err == nil {
					err = env.Client.Create(ctx, lease)
				}
			} else if err = render.SetState(lease, st); err == nil {
				err = env.Client.Update(ctx, lease)
			}
			if err != nil {
				return err
			}
			if right {
				enrollment.Confirm(&e.Status, at)
			}
			enrollment.SetEnrolled(&e.Status, e.Generation)
			enrollment.SetLocked(&e.Status, &st, e.Generation, at)
			return env.Client.Status().Update(ctx, e)
		})
		if err != nil {
			t.Fatalf("recording attempt: %v", err)
		}
	}
}

// stateLease returns e's state Lease and the state it records, or nils when there is none.
func stateLease(t *testing.T, e *v1alpha1.UserEnrollment) (*coordinationv1.Lease, *v1alpha1.VerificationState) {
	t.Helper()
	l := &coordinationv1.Lease{}
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.StateLeaseName(e.Spec.PolicyRef.Name, e.Spec.User)}, l)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := render.ParseState(l, e)
	if err != nil {
		t.Fatal(err)
	}
	return l, st
}

func isNotFound(err error) (bool, error) {
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}

// waitPolicyObserved waits until the manager has reconciled p's generation: its cache, which the enrollment
// reconciler reads too, holds that spec from then on.
func waitPolicyObserved(t *testing.T, p *v1alpha1.TwoFactorPolicy) {
	t.Helper()
	testenv.EventuallyErr(t, "the manager to observe the policy edit", func() (bool, error) {
		got := &v1alpha1.TwoFactorPolicy{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got)
		return got.Status.ObservedGeneration >= p.Generation, err
	})
}
