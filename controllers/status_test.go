package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// These tests use a fake client, for the faults a real API server will not produce on demand: a cache
// list that fails, a status write that loses a race. Everything else runs against the real control plane.

func fakeClient(funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(objs...).WithStatusSubresource(objs...).
		WithIndex(&v1alpha1.UserEnrollment{}, IndexPolicyUser, Indexes[IndexPolicyUser]).
		WithInterceptorFuncs(funcs).Build()
}

func testObjects() (*v1alpha1.TwoFactorPolicy, *v1alpha1.UserEnrollment) {
	p := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "webapp", Generation: 1},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}}
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", UID: "e1", Generation: 1},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "alice"}}
	return p, e
}

func TestAFailedListIsAnErrorNotADuplicateUser(t *testing.T) {
	p, e := testObjects()
	meta.SetStatusCondition(&e.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonKeyProvisioned, Message: "Key provisioned in Secret alice-otp", ObservedGeneration: 1})
	c := fakeClient(interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
		return errors.New("the cache is not synced")
	}}, p, e)
	r := &EnrollmentReconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(10), Clock: clocktesting.NewFakePassiveClock(time.Now())}

	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(e)}); err == nil {
		t.Fatal("a failed list was not returned as an error: the controller would not retry")
	}
	got := &v1alpha1.UserEnrollment{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(e), got); err != nil {
		t.Fatal(err)
	}
	if ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); ready.Reason != v1alpha1.ReasonKeyProvisioned {
		t.Fatalf("a failed list changed Ready to %s %q", ready.Reason, ready.Message)
	}
}

func TestAStatusWriteThatLosesARaceRunsThePassAgain(t *testing.T) {
	conflict := func(context.Context, client.Client, string, client.Object, ...client.SubResourceUpdateOption) error {
		return apierrors.NewConflict(schema.GroupResource{Group: v1alpha1.GroupVersion.Group}, "x", errors.New("changed"))
	}
	for _, tt := range []struct {
		name string
		r    func(c client.Client) reconcile.Reconciler
		obj  func(*v1alpha1.TwoFactorPolicy, *v1alpha1.UserEnrollment) client.Object
	}{
		{"policy", func(c client.Client) reconcile.Reconciler {
			return &PolicyReconciler{Client: c, Recorder: events.NewFakeRecorder(10)}
		}, func(p *v1alpha1.TwoFactorPolicy, _ *v1alpha1.UserEnrollment) client.Object { return p }},
		{"enrollment", func(c client.Client) reconcile.Reconciler {
			return &EnrollmentReconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(10),
				Clock: clocktesting.NewFakePassiveClock(time.Now())}
		}, func(_ *v1alpha1.TwoFactorPolicy, e *v1alpha1.UserEnrollment) client.Object { return e }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, e := testObjects()
			c := fakeClient(interceptor.Funcs{SubResourceUpdate: conflict}, p, e)
			res, err := tt.r(c).Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tt.obj(p, e))})
			if err == nil && res.RequeueAfter == 0 {
				t.Fatalf("a lost status write was dropped: result %+v, no error; the status stays stale", res)
			}
		})
	}
}

func TestPolicyReadySaysWhatBecameOfTheConfigMap(t *testing.T) {
	for _, tt := range []struct {
		state  configMapState
		status metav1.ConditionStatus
		reason string
	}{
		{configMapCurrent, metav1.ConditionTrue, v1alpha1.ReasonReconciled},
		{configMapConflict, metav1.ConditionFalse, v1alpha1.ReasonConfigMapConflict},
		{configMapFailed, metav1.ConditionFalse, v1alpha1.ReasonConfigMapFailed},
	} {
		c := policyReady(7, "webapp-verifier", tt.state)
		if c.Status != tt.status || c.Reason != tt.reason || c.ObservedGeneration != 7 || c.Type != v1alpha1.ConditionReady {
			t.Errorf("state %d: %s %s, want %s %s", tt.state, c.Status, c.Reason, tt.status, tt.reason)
		}
	}
}

// Without its policy the manager reads nothing of an enrollment's Secret, so it must not conclude that a
// confirmed enrollment lost its key.
func TestAMissingPolicyIsNotALostKey(t *testing.T) {
	_, e := testObjects()
	now := metav1.Now()
	e.Status = v1alpha1.UserEnrollmentStatus{SecretName: "alice-otp", SecretUID: "s1", ConfirmedAt: &now}
	c := fakeClient(interceptor.Funcs{}, e)
	rec := events.NewFakeRecorder(10)
	r := &EnrollmentReconciler{Client: c, APIReader: c, Recorder: rec, Clock: clocktesting.NewFakePassiveClock(time.Now())}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(e)}); err != nil {
		t.Fatal(err)
	}
	got := &v1alpha1.UserEnrollment{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(e), got); err != nil {
		t.Fatal(err)
	}
	if ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); ready == nil || ready.Reason != v1alpha1.ReasonPolicyNotFound {
		t.Errorf("Ready = %+v, want PolicyNotFound", ready)
	}
	select {
	case ev := <-rec.Events:
		t.Errorf("an Event without a policy: %s", ev)
	default:
	}
}
