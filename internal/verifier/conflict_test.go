package verifier

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// After a write conflict, the decision is taken again on the state that won, once: the replica's own
// earlier write, still ahead of its cache, used to be decided on again and again, up to ten conflicting
// writes in a few milliseconds before a 503.
func TestAConflictIsFollowedByOneDecisionOnTheStateThatWon(t *testing.T) {
	ctx := context.Background()
	v, e, cache := decisionFixture(t)
	// The API server: the same enrollment, on which another replica recorded a failure after this replica's
	// own last write, which the cache has not shown yet.
	var updates int
	api := fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
		WithStatusSubresource(&v1alpha1.UserEnrollment{}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
			updates++
			return c.SubResource(sub).Update(ctx, o, opts...)
		}}).Build()
	cached := &v1alpha1.UserEnrollment{}
	if err := cache.Get(ctx, client.ObjectKeyFromObject(e), cached); err != nil {
		t.Fatal(err)
	}
	mine := cached.DeepCopy()
	if err := api.Status().Update(ctx, mine); err != nil {
		t.Fatal(err)
	}
	v.remember(cached.ResourceVersion, mine.DeepCopy())
	theirs := mine.DeepCopy()
	theirs.Status.FailedAttempts = 1
	if err := api.Status().Update(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	v.Client, v.Clock, updates = api, clock.RealClock{}, 0

	d, err := v.Verify(ctx, "alice", "000000")
	if err != nil || d.Result != Rejected || d.RemainingAttempts != 1 {
		t.Fatalf("got %+v, %v; want a rejection counted on top of the other replica's", d, err)
	}
	if updates != 2 {
		t.Fatalf("%d writes for one decision: want the one that conflicted and the one that landed", updates)
	}
}

// decisionFixture is a verifier over a fake cache holding an Enforced TOTP policy webapp, its ConfigMap, and
// alice's confirmed enrollment e with its key; v.Client is not set.
func decisionFixture(t testing.TB) (*Verifier, *v1alpha1.UserEnrollment, client.WithWatch) {
	v, e, secret, scratch := keyFixture(t, nil)
	policy := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "webapp", UID: "policy-1"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}}
	cm, err := render.VerifierConfigMap(policy)
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	e.Status.ConfirmedAt = &now
	cache := fake.NewClientBuilder().WithScheme(scratch.Scheme()).WithObjects(policy, cm, secret, e.DeepCopy()).
		WithIndex(&v1alpha1.UserEnrollment{}, IndexKey, func(o client.Object) []string {
			return []string{enrollment.KeyOf(o.(*v1alpha1.UserEnrollment))}
		}).Build()
	v.Cache, v.Clock = cache, clock.RealClock{}
	return v, e, cache
}

// Two writes in a row before the watch shows the first: the replica answers from the second, not from the
// cache's older version (the second used to be forgotten at once, so that a request right after a
// confirmation and a failure read the enrollment as never confirmed).
func TestReadYourWritesSurvivesTwoWritesAheadOfTheCache(t *testing.T) {
	v := &Verifier{}
	cached := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", ResourceVersion: "1"}}
	first := cached.DeepCopy()
	first.ResourceVersion = "2"
	v.remember("1", first)
	second := first.DeepCopy()
	second.ResourceVersion = "3"
	v.remember(v.latest(cached).ResourceVersion, second)
	if got := v.latest(cached); got.ResourceVersion != "3" {
		t.Fatalf("with the cache at 1 after writes 2 and 3, the replica reads %s", got.ResourceVersion)
	}
	moved := cached.DeepCopy()
	moved.ResourceVersion = "3"
	if got := v.latest(moved); got != moved {
		t.Fatal("once the cache moved, the replica still reads its own write")
	}
}
