package verifier

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// After a write conflict, the decision is taken again on the state that won, read fresh, once: the read
// that may come from the API server's watch cache is a version behind (another replica recorded a failure
// a moment ago), and deciding on it again would only conflict again, up to ten writes in a few milliseconds
// before a 503.
func TestAConflictIsFollowedByOneDecisionOnTheStateThatWon(t *testing.T) {
	ctx := context.Background()
	v, e, cache := decisionFixture(t)
	var updates int
	var stale *coordinationv1.Lease
	api := fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
		WithStatusSubresource(&v1alpha1.UserEnrollment{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				updates++
				return c.Update(ctx, o, opts...)
			},
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
				if l, ok := o.(*coordinationv1.Lease); ok && stale != nil { // the watch cache, behind
					stale.DeepCopyInto(l)
					stale = nil
					return nil
				}
				return c.Get(ctx, key, o, opts...)
			},
		}).Build()
	v.Client, v.Leases = api, crLeases{api, e.Namespace}
	mine, err := render.StateLease(e, v1alpha1.VerificationState{Key: e.Status.SecretUID})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	stale = mine.DeepCopy()
	theirs := mine.DeepCopy()
	if err := render.SetState(theirs, v1alpha1.VerificationState{Key: e.Status.SecretUID, FailedAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := api.Update(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	updates = 0

	d, err := v.Verify(ctx, "alice", "000000")
	if err != nil || d.Result != Rejected || d.RemainingAttempts != 1 {
		t.Fatalf("got %+v, %v; want a rejection counted on top of the other replica's", d, err)
	}
	if updates != 2 {
		t.Fatalf("%d writes for one decision: want the one that conflicted and the one that landed", updates)
	}
}

// A replica reads its own writes of a state Lease, two in a row, while reads still show the version before
// them; once a read shows another version, that read wins.
func TestReadYourStateWritesSurvivesTwoWritesAheadOfTheReads(t *testing.T) {
	v := &Verifier{}
	lease := func(rv string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice-x", ResourceVersion: rv}}
	}
	v.rememberLease("", lease("1")) // created
	if got := v.latestLease("alice-x", nil); got == nil || got.ResourceVersion != "1" {
		t.Fatalf("a read that does not find the Lease yet hides this replica's creation: %v", got)
	}
	v.rememberLease("1", lease("2"))
	if got := v.latestLease("alice-x", nil); got == nil || got.ResourceVersion != "2" {
		t.Fatalf("with reads behind both writes, the replica reads %v", got)
	}
	if got := v.latestLease("alice-x", lease("3")); got.ResourceVersion != "3" {
		t.Fatal("once a read moved on, the replica still reads its own write")
	}
	if got := v.latestLease("alice-x", nil); got != nil {
		t.Fatal("a forgotten write came back")
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
