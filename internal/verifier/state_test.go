package verifier_test

import (
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

// stateLease reads user's state Lease under the policy webapp.
func stateLease(t *testing.T, ns, user string) *coordinationv1.Lease {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.StateLeaseName("webapp", user)}, l); err != nil {
		t.Fatal(err)
	}
	return l
}

// A decision is one write of the user's state Lease, which nobody watches: the enrollment, which every
// replica and the manager watch, changes only on a transition (the confirmation, the lock).
func TestADecisionWritesTheStateLeaseAndTheEnrollmentOnlyOnATransition(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 2)
	p, k := confirmedEverywhere(t, ns, rs, "alice")
	e, l := enrollment(t, ns, "alice"), stateLease(t, ns, "alice")
	if !metav1.IsControlledBy(l, e) || len(l.Labels) != 0 {
		t.Fatalf("the state Lease is not the enrollment's, or carries labels each decision would pay for: %+v", l.ObjectMeta)
	}

	if res := rs[1].verify(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second))); res.Status != 200 {
		t.Fatalf("verify: %d %v", res.Status, res.Body)
	}
	if res := rs[0].verify(t, "alice", "000000"); res.Status != 401 || res.Body["remainingAttempts"] != 2.0 {
		t.Fatalf("a wrong code: %d %v", res.Status, res.Body)
	}
	if after := enrollment(t, ns, "alice"); after.ResourceVersion != e.ResourceVersion {
		t.Fatalf("a decision that changes no condition wrote the enrollment: %+v", after.Status)
	}
	if after := stateLease(t, ns, "alice"); after.ResourceVersion == l.ResourceVersion {
		t.Fatal("the decisions were not recorded in the state Lease")
	}
	if st := state(t, ns, "alice"); st.FailedAttempts != 1 || ptr.Deref(st.LastUsedStep, 0) != time.Now().Unix()/30+1 {
		t.Fatalf("state after an acceptance and a failure: %+v", st)
	}

	// The lock is a transition: the Locked condition shows it at once, for kubectl wait and GitOps.
	rs[1].verify(t, "alice", "000001")
	if res := rs[0].verify(t, "alice", "000002"); res.Status != 401 || res.Body["remainingAttempts"] != 0.0 {
		t.Fatalf("the locking code: %d %v", res.Status, res.Body)
	}
	if e := enrollment(t, ns, "alice"); !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked) {
		t.Fatalf("locked, but the condition does not say so: %+v", e.Status.Conditions)
	}
}

// After a recovery (the enrollment deleted) the user enrolls again before the garbage collector removed the
// old enrollment's state Lease (this control plane runs none): the new enrollment starts afresh, and the old
// lock does not follow the user.
func TestANewEnrollmentNeverInheritsAPreviousOnesState(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodHOTP), 1)
	r := rs[0]
	adminEnrollment(t, ns, "alice-1", "alice")
	p, k := secretKey(t, env.Client, ns, "alice-1")
	if res := r.confirm(t, "alice", hotp(t, p, k, 0)); res.Status != 200 {
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}
	for i := range 3 {
		r.verify(t, "alice", fmt.Sprintf("%06d", i))
	}
	if res := r.verify(t, "alice", hotp(t, p, k, 1)); res.Status != 429 {
		t.Fatalf("not locked: %d %v", res.Status, res.Body)
	}
	old := stateLease(t, ns, "alice")
	if err := env.Client.Delete(ctx, enrollmentNamed(t, ns, "alice-1")); err != nil {
		t.Fatal(err)
	}

	adminEnrollment(t, ns, "alice-2", "alice")
	p, k = secretKey(t, env.Client, ns, "alice-2")
	testenv.Eventually(t, "the replica to see the new enrollment", func() bool {
		return r.confirm(t, "alice", hotp(t, p, k, 0)).Status != 404
	})
	if res := r.verify(t, "alice", hotp(t, p, k, 1)); res.Status != 200 {
		t.Fatalf("the new enrollment inherited the old one's lock: %d %v", res.Status, res.Body)
	}
	l := stateLease(t, ns, "alice")
	if l.UID == old.UID || !metav1.IsControlledBy(l, enrollmentNamed(t, ns, "alice-2")) {
		t.Fatalf("the old state Lease was reused: %+v", l.ObjectMeta)
	}
}

// A Lease in the way of a user's state, controlled by an enrollment that exists (here another user's), is
// never deleted, and no decision is made without the user's own state: 503, nothing counted, nothing lost.
func TestAStateLeaseOfAnotherLiveEnrollmentIsLeftAlone(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	p, k := enrolled(t, r, ns, "alice")
	enrolled(t, r, ns, "bob")
	l := stateLease(t, ns, "alice")
	l.OwnerReferences = stateLease(t, ns, "bob").OwnerReferences
	if err := env.Client.Update(ctx, l); err != nil {
		t.Fatal(err)
	}
	if res := r.verify(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second))); res.Status != 503 {
		t.Fatalf("a decision without the user's own state: %d %v", res.Status, res.Body)
	}
	if after := stateLease(t, ns, "alice"); after.UID != l.UID {
		t.Fatal("the Lease of a live enrollment was deleted")
	}
}

// A state Lease only points a replica to its user's keyed enrollment. A replica that finds none (deleted by
// anyone who may delete Leases in the namespace) looks for the enrollment named after the user (alice's,
// self-enrolled), or lists the user's enrollments (bob's, named by an administrator): it never takes a
// confirmed user for one without an enrollment, which an Optional policy lets in without a code.
func TestADeletedStateLeaseNeverSkipsTheSecondFactor(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeOptional, v1alpha1.MethodTOTP), 2)
	keys := map[string][2]any{}
	p, k := enrolled(t, rs[0], ns, "alice")
	keys["alice"] = [2]any{p, k}
	adminEnrollment(t, ns, "bob-1", "bob")
	p, k = secretKey(t, env.Client, ns, "bob-1")
	if res := rs[0].confirm(t, "bob", totp(t, p, k, time.Now())); res.Status != 200 {
		t.Fatalf("confirm bob: %d %v", res.Status, res.Body)
	}
	keys["bob"] = [2]any{p, k}
	cold := rs[1] // has read neither
	for user, key := range keys {
		if err := env.Client.Delete(ctx, stateLease(t, ns, user)); err != nil {
			t.Fatal(err)
		}
		if res := cold.verify(t, user, "000000"); res.Status != 401 || res.Body["result"] != "rejected" {
			t.Fatalf("a wrong code of confirmed %s without a state Lease: %d %v", user, res.Status, res.Body)
		}
		if res := cold.verify(t, user, totp(t, key[0].(otp.Params), key[1].([]byte), time.Now().Add(30*time.Second))); res.Status != 200 ||
			res.Body["result"] != "accepted" {
			t.Fatalf("%s's right code: %d %v", user, res.Status, res.Body)
		}
	}
}

// Recovery is deleting the user's enrollment. A replica that remembers it forgets it when its watch shows the
// deletion, and refuses the old key's codes from then on, although here, with no garbage collector, the
// key's Secret and the state Lease outlive the enrollment.
func TestADeletedEnrollmentIsForgotten(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodHOTP), 1)
	r := rs[0]
	p, k := enrolled(t, r, ns, "alice") // confirmed with HOTP code 0
	if res := r.verify(t, "alice", hotp(t, p, k, 1)); res.Status != 200 {
		t.Fatalf("verify: %d %v", res.Status, res.Body)
	}
	if err := env.Client.Delete(ctx, enrollment(t, ns, "alice")); err != nil {
		t.Fatal(err)
	}
	counter := uint64(2)
	testenv.Eventually(t, "the replica to refuse the deleted enrollment's key", func() bool {
		res := r.verify(t, "alice", hotp(t, p, k, counter))
		if res.Status == 200 { // still remembered: the watch has not shown the deletion yet
			counter++
		}
		return res.Status == 403 && res.Body["result"] == "enrollment_required"
	})
}

// A replica remembers enrollments without their annotations (a GitOps tool's last-applied copy is most of
// an enrollment); its status writes must leave the API server's annotations as they are.
func TestAnnotationsSurviveTheVerifiersStatusWrites(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodHOTP), 1)
	adminEnrollment(t, ns, "alice-1", "alice")
	e := enrollmentNamed(t, ns, "alice-1")
	metav1.SetMetaDataAnnotation(&e.ObjectMeta, "example.com/owner", "team-a")
	if err := env.Client.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	p, k := secretKey(t, env.Client, ns, "alice-1")
	if res := rs[0].confirm(t, "alice", hotp(t, p, k, 0)); res.Status != 200 {
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}
	after := enrollmentNamed(t, ns, "alice-1")
	if after.Status.ConfirmedAt == nil || after.Annotations["example.com/owner"] != "team-a" {
		t.Fatalf("after the confirmation: confirmed %v, annotations %v", after.Status.ConfirmedAt, after.Annotations)
	}
}

// adminEnrollment creates an enrollment named name for user under webapp, as an administrator would, and
// waits for its key.
func adminEnrollment(t *testing.T, ns, name, user string) {
	t.Helper()
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: user}}
	if err := env.Client.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the enrollment's key", func() bool { return enrollmentNamed(t, ns, name).Status.SecretUID != "" })
}

func enrollmentNamed(t *testing.T, ns, name string) *v1alpha1.UserEnrollment {
	t.Helper()
	e := &v1alpha1.UserEnrollment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, e); err != nil {
		t.Fatal(err)
	}
	return e
}
