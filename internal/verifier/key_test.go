package verifier

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// keyFixture is an enrollment with its key Secret, in a fake API server whose Gets can be intercepted, read
// by a verifier whose directory remembers what it reads (as though its watches ran).
func keyFixture(t testing.TB, get func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error) (*Verifier, *v1alpha1.UserEnrollment, *corev1.Secret, client.Client) {
	t.Helper()
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", UID: "enrollment-1"},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "alice"}}
	p := render.ParamsFor((&v1alpha1.TwoFactorPolicy{}).Resolve(), v1alpha1.MethodTOTP)
	k := make([]byte, 20)
	_, _ = rand.Read(k)
	s, err := render.OTPSecret(e, p, "webapp", k)
	if err != nil {
		t.Fatal(err)
	}
	s.UID = "secret-1"
	e.Status.SecretUID = string(s.UID)
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(s).WithInterceptorFuncs(interceptor.Funcs{Get: get}).Build()
	return &Verifier{Namespace: "ns", Policy: "webapp", Client: c, dir: newDirectory(0)}, e, s, c
}

func TestAKeyIsReadOnceAndForgottenWithItsSecret(t *testing.T) {
	gets := 0
	v, e, s, c := keyFixture(t, func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		gets++
		return c.Get(ctx, key, obj, opts...)
	})
	ctx := context.Background()
	_, first, err := v.key(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	readsForFirst := gets
	_, again, err := v.key(ctx, e)
	if err != nil || string(again) != string(first) {
		t.Fatalf("second read: %v", err)
	}
	if gets != readsForFirst {
		t.Errorf("a known key was read from the cache again (%d reads, then %d)", readsForFirst, gets)
	}

	// Another enrollment naming the same Secret UID does not get the key.
	other := e.DeepCopy()
	other.UID = "enrollment-2"
	if _, _, err := v.key(ctx, other); err == nil {
		t.Error("an enrollment that does not control the Secret got its key")
	}

	// The Secret is deleted and the watch says so: the key is never used again.
	if err := c.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	v.dir.keyGone(s.UID)
	if _, _, err := v.key(ctx, e); err == nil {
		t.Error("the key of a deleted Secret was used")
	}
}

// TestAKeyDeletedWhileBeingReadIsNotKept: the Secret is deleted, and the watch says so, between the
// verifier's read of it and its remembering the parsed key. The decision under way may use it (it read the
// key before the deletion), but the key must not be remembered: the next check reads, and finds no key.
func TestAKeyDeletedWhileBeingReadIsNotKept(t *testing.T) {
	var v *Verifier
	var s *corev1.Secret
	gets := 0
	v, e, s, _ := keyFixture(t, func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		gets++
		err := c.Get(ctx, key, obj, opts...)
		if gets == 1 { // the read the key is parsed from; the deletion and the watch's word follow at once
			if err := c.Delete(ctx, s); err != nil {
				t.Fatal(err)
			}
			v.dir.keyGone(s.UID)
		}
		return err
	})
	ctx := context.Background()
	if _, _, err := v.key(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.dir.key(s.UID); ok {
		t.Error("a key whose Secret was deleted while it was read was remembered")
	}
	if _, _, err := v.key(ctx, e); err == nil {
		t.Error("the key of a deleted Secret was used after the deletion was seen")
	}
}

// When the manager says no key will come (its view of the policy is ahead of this replica's), self-enrollment
// answers 403 at once: it used to wait out its provisioning timeout and answer 503.
func TestSelfEnrollmentStopsWaitingWhenTheManagerSaysNoKeyWillCome(t *testing.T) {
	for reason, want := range map[string]error{
		v1alpha1.ReasonPolicyDisabled:   ErrDisabled,
		v1alpha1.ReasonMethodNotAllowed: ErrMethodNotAllowed,
	} {
		v, e, _, c := keyFixture(t, nil)
		e.Status.SecretUID, e.Generation = "", 1
		meta.SetStatusCondition(&e.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady,
			Status: metav1.ConditionFalse, Reason: reason, ObservedGeneration: 1})
		if err := c.Create(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		v.ProvisionTimeout = time.Minute
		start := time.Now()
		if _, err := v.awaitKey(context.Background(), e); !errors.Is(err, want) || time.Since(start) > 10*time.Second {
			t.Errorf("%s: %v after %v, want %v at once", reason, err, time.Since(start), want)
		}
	}
}
