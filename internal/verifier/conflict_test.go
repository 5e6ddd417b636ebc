package verifier

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
)

// A replica decides on what it last wrote, without reading: one write per decision. When another replica
// wrote in between, that write is refused, and the decision is taken again on the state that won, read from
// etcd, once (deciding again on a version behind would only conflict again, up to ten writes in a few
// milliseconds before a 503). From then on, for that user, the replica reads before it decides.
func TestAConflictIsFollowedByOneDecisionOnTheStateThatWon(t *testing.T) {
	ctx := context.Background()
	v, e, cache := decisionFixture(t)
	api, gets, updates := countingAPI(cache, e)
	v.Client, v.Leases = api, crLeases{api, e.Namespace}
	wrong := func() Decision {
		t.Helper()
		d, err := v.Verify(ctx, "alice", "000000")
		if err != nil || d.Result != Rejected {
			t.Fatalf("a wrong code: %+v, %v", d, err)
		}
		return d
	}
	wrong()
	wrong()
	if *gets != 1 || *updates != 1 {
		t.Fatalf("%d reads and %d writes for two decisions: want the first read, and no read after the replica's own write", *gets, *updates)
	}

	// Another replica records a failure.
	writeStateAsAnother(ctx, t, api, e, v1alpha1.VerificationState{Key: e.Status.SecretUID, FailedAttempts: 1})
	*gets, *updates = 0, 0
	if d := wrong(); d.RemainingAttempts != 1 {
		t.Fatalf("remaining %d: want the failure counted on top of the other replica's", d.RemainingAttempts)
	}
	if *gets != 1 || *updates != 2 {
		t.Fatalf("%d reads, %d writes: want the write that conflicted, one read, the write that landed", *gets, *updates)
	}
	*gets, *updates = 0, 0
	if d := wrong(); !d.LockedNow {
		t.Fatalf("the third failure did not lock: %+v", d)
	}
	if *gets != 1 || *updates != 1 {
		t.Fatalf("%d reads, %d writes: a contended user's state is read before each decision", *gets, *updates)
	}
}

// Contention ends: once the read before a decision shows the very version this replica wrote last, nobody
// else wrote since (the user's requests reach this replica alone again, after a rolling restart or a
// failover moved them for a while), and the replica decides on its memory again: one write per decision.
func TestAUserNoLongerContendedIsDecidedFromMemoryAgain(t *testing.T) {
	ctx := context.Background()
	v, e, cache := decisionFixture(t)
	api, gets, updates := countingAPI(cache, e)
	v.Client, v.Leases = api, crLeases{api, e.Namespace}
	wrong := func(reads, writes int) {
		t.Helper()
		*gets, *updates = 0, 0
		if d, err := v.Verify(ctx, "alice", "000000"); err != nil || d.Result != Rejected {
			t.Fatalf("a wrong code: %+v, %v", d, err)
		}
		if *gets != reads || *updates != writes {
			t.Fatalf("%d reads and %d writes, want %d and %d", *gets, *updates, reads, writes)
		}
	}
	wrong(1, 0) // the first decision reads, and creates the Lease
	// Another replica lets alice in: her failures start again from zero.
	writeStateAsAnother(ctx, t, api, e, v1alpha1.VerificationState{Key: e.Status.SecretUID})
	wrong(1, 2) // the refused write, the read, the write that lands
	wrong(1, 1) // contended: it reads first, and the read shows its own write
	wrong(0, 1) // nobody else wrote since: memory again
}

// A refusal writes nothing, so nothing would catch a stale memory: a replica that remembers a lock reads
// the state before it refuses, and an administrator's unlock (by the manager, on another replica's memory)
// lets the user in at once.
func TestALockIsReadBeforeItRefuses(t *testing.T) {
	ctx := context.Background()
	v, e, cache := decisionFixture(t)
	api := fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
		WithStatusSubresource(&v1alpha1.UserEnrollment{}).Build()
	v.Client, v.Leases = api, crLeases{api, e.Namespace}
	for range 3 {
		if _, err := v.Verify(ctx, "alice", "000000"); err != nil {
			t.Fatal(err)
		}
	}
	writeStateAsAnother(ctx, t, api, e, v1alpha1.VerificationState{Key: e.Status.SecretUID}) // the unlock
	if d, err := v.Verify(ctx, "alice", "000000"); err != nil || d.Result != Rejected || d.RemainingAttempts != 2 {
		t.Fatalf("after the unlock: %+v, %v; want a wrong code counted from zero", d, err)
	}
}

// A replica reads its own writes of a contended user's state Lease while reads from the watch cache still
// show the version before them; once a read shows another version, that read wins.
func TestReadYourStateWritesOverALaggingRead(t *testing.T) {
	ctx := context.Background()
	v, e, cache := decisionFixture(t)
	var lagging *coordinationv1.Lease // what the watch cache shows
	api := fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
		WithStatusSubresource(&v1alpha1.UserEnrollment{}).
		WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
			if l, ok := o.(*coordinationv1.Lease); ok && lagging != nil {
				lagging.DeepCopyInto(l)
				return nil
			}
			return c.Get(ctx, key, o, opts...)
		}}).Build()
	v.Client, v.Leases = api, crLeases{api, e.Namespace}
	if _, err := v.Verify(ctx, "alice", "000000"); err != nil { // creates the Lease
		t.Fatal(err)
	}
	first, _ := v.known(stateName(e))
	written := &coordinationv1.Lease{}
	if err := api.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: stateName(e)}, written); err != nil {
		t.Fatal(err)
	}
	lagging = written // the version the first decision wrote, as reads keep showing it
	v.remembered().Add(stateName(e), knownLease{lease: first.lease, recorded: first.recorded, written: true, base: "", contended: true})
	for want := int32(2); want <= 3; want++ { // two writes ahead of the lagging read
		if _, err := v.Verify(ctx, "alice", "000000"); err != nil {
			t.Fatal(err)
		}
		read, err := v.readState(ctx, e, watchCache)
		if err != nil || read.state.FailedAttempts != want {
			t.Fatalf("with reads behind, the replica reads %d failures (%v); want its own %d", read.state.FailedAttempts, err, want)
		}
	}
	lagging = nil // the watch cache moves on
	writeStateAsAnother(ctx, t, api, e, v1alpha1.VerificationState{Key: e.Status.SecretUID})
	if read, err := v.readState(ctx, e, watchCache); err != nil || read.state.FailedAttempts != 0 {
		t.Fatalf("once reads moved on, the replica still reads its own write: %+v, %v", read.state, err)
	}
}

// A replica whose cache has not yet seen another replica's confirmation reads the enrollment from the API
// server before it answers as though the user had not confirmed: otherwise, for the moment the watch takes, a
// user who has just confirmed is told to enroll under an Enforced policy, and let in without a code under
// an Optional one.
func TestAConfirmationByAnotherReplicaIsReadBeforeAnsweringWithoutACode(t *testing.T) {
	for _, mode := range []v1alpha1.Mode{v1alpha1.ModeEnforced, v1alpha1.ModeOptional} {
		t.Run(string(mode), func(t *testing.T) {
			ctx := context.Background()
			v, e, cache := decisionFixture(t)
			api := fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
				WithStatusSubresource(&v1alpha1.UserEnrollment{}).Build()
			v.Client, v.Leases = api, crLeases{api, e.Namespace}
			// The API server has the confirmation; this replica remembers the enrollment from before it.
			stale := e.DeepCopy()
			stale.Status.ConfirmedAt = nil
			v.dir.settle(e.Spec.User, v.dir.reading(), stale)
			policy := &v1alpha1.TwoFactorPolicy{}
			if err := cache.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: "webapp"}, policy); err != nil {
				t.Fatal(err)
			}
			policy.Spec.Mode = mode
			cm, err := render.VerifierConfigMap(policy)
			if err != nil {
				t.Fatal(err)
			}
			if err := cache.Update(ctx, cm); err != nil {
				t.Fatal(err)
			}
			s := &corev1.Secret{}
			if err := cache.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}, s); err != nil {
				t.Fatal(err)
			}
			p, k, err := render.ParseOTPSecret(s)
			if err != nil {
				t.Fatal(err)
			}
			code, err := otp.Code(k, p.Algorithm, p.Digits, uint64(time.Now().Unix())/uint64(p.PeriodSeconds))
			if err != nil {
				t.Fatal(err)
			}
			if d, err := v.Verify(ctx, "alice", code); err != nil || d.Result != Accepted {
				t.Fatalf("a valid code right after another replica's confirmation: %+v, %v; want it checked and accepted", d, err)
			}
		})
	}
}

// decisionFixture is a verifier over a fake cache holding an Enforced TOTP policy webapp and its ConfigMap,
// and a directory remembering alice's confirmed enrollment e with its key; v.Client holds them too.
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
	cache := fake.NewClientBuilder().WithScheme(scratch.Scheme()).WithObjects(policy, cm, secret, e.DeepCopy()).Build()
	v.Cache, v.Clock, v.dir = cache, clock.RealClock{}, knowing(t, e, secret)
	return v, e, cache
}

// countingAPI is a fake API server holding e that counts the reads of state Leases and the updates made
// through it.
func countingAPI(cache client.WithWatch, e *v1alpha1.UserEnrollment) (api client.WithWatch, leaseReads, updates *int) {
	leaseReads, updates = new(int), new(int)
	api = fake.NewClientBuilder().WithScheme(cache.Scheme()).WithObjects(e.DeepCopy()).
		WithStatusSubresource(&v1alpha1.UserEnrollment{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				*updates++
				return c.Update(ctx, o, opts...)
			},
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, o client.Object, opts ...client.GetOption) error {
				if _, ok := o.(*coordinationv1.Lease); ok {
					*leaseReads++
				}
				return c.Get(ctx, key, o, opts...)
			},
		}).Build()
	return api, leaseReads, updates
}

// knowing returns a directory that remembers e and the key of its Secret s, as though its watches ran.
func knowing(t testing.TB, e *v1alpha1.UserEnrollment, s *corev1.Secret) *directory {
	t.Helper()
	d := newDirectory(0)
	d.settle(e.Spec.User, d.reading(), e.DeepCopy())
	p, k, err := render.ParseOTPSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	d.settleKey(s.UID, d.keyMark(), parsedKey{owner: e.UID, params: p, key: k})
	return d
}

// fakeAPI is a fake API server that selects enrollments by the fields the CRD makes selectable, as the
// verifier lists them, and serves their status subresource.
func fakeAPI(scheme *runtime.Scheme) *fake.ClientBuilder {
	b := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&v1alpha1.UserEnrollment{})
	for field, value := range map[string]func(*v1alpha1.UserEnrollment) string{
		"spec.user":           func(e *v1alpha1.UserEnrollment) string { return e.Spec.User },
		"spec.policyRef.name": func(e *v1alpha1.UserEnrollment) string { return e.Spec.PolicyRef.Name },
	} {
		b = b.WithIndex(&v1alpha1.UserEnrollment{}, field, func(o client.Object) []string { return []string{value(o.(*v1alpha1.UserEnrollment))} })
	}
	return b
}

// writeStateAsAnother records st in e's state Lease through api, as another replica (or an unlock by the
// manager) would, behind the back of the replica under test.
func writeStateAsAnother(ctx context.Context, t *testing.T, api client.Client, e *v1alpha1.UserEnrollment, st v1alpha1.VerificationState) {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := api.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: stateName(e)}, l); err != nil {
		t.Fatal(err)
	}
	if err := render.SetState(l, st); err != nil {
		t.Fatal(err)
	}
	if err := api.Update(ctx, l); err != nil {
		t.Fatal(err)
	}
}
