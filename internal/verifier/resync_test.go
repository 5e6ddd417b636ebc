package verifier_test

import (
	"fmt"
	"testing"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

func (r *replica) resync(t *testing.T, user, code, next string) response {
	return call(t, "POST", r.url+"/v1/enrollments/"+user+"/resync", fmt.Sprintf(`{"code":%q,"nextCode":%q}`, code, next))
}

// A token pressed past the look-ahead window is moved back in step by two consecutive codes, on either
// replica: exactly at the window's far edge and not one further, once (a repeated pair is already_used and
// counts nothing), and never where the policy turns resynchronisation off.
func TestHOTPResyncAcrossReplicas(t *testing.T) {
	s := spec(v1alpha1.ModeEnforced, v1alpha1.MethodHOTP)
	s.HOTP = &v1alpha1.HOTPSettings{LookAhead: ptr.To[int32](2), ResyncWindow: 20}
	ns, rs := setup(t, s, 2)
	a, b := rs[0], rs[1]
	if res := a.enroll(t, "alice", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	p, k := key(t, ns, "alice")
	if res := b.confirm(t, "alice", hotp(t, p, k, 0)); res.Status != 200 { // the counter is 1 now
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}
	if res := b.verify(t, "alice", hotp(t, p, k, 10)); res.Status != 401 || res.result() != "rejected" {
		t.Fatalf("a code past the look-ahead: %d %v", res.Status, res.Body)
	}
	if res := b.resync(t, "alice", hotp(t, p, k, 10), hotp(t, p, k, 11)); res.Status != 200 || res.result() != "resynchronized" {
		t.Fatalf("resync: %d %v", res.Status, res.Body)
	}
	if st := state(t, ns, "alice"); ptr.Deref(st.HOTPCounter, 0) != 12 || st.FailedAttempts != 0 {
		t.Fatalf("after resync: counter %v, %d failures", st.HOTPCounter, st.FailedAttempts)
	}
	if res := a.resync(t, "alice", hotp(t, p, k, 10), hotp(t, p, k, 11)); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("the same pair again, on the other replica: %d %v", res.Status, res.Body)
	}
	if res := a.verify(t, "alice", hotp(t, p, k, 12)); res.Status != 200 {
		t.Fatalf("the next code after resync: %d %v", res.Status, res.Body)
	}
	// The counter is 13: pairs starting at 13..32 are in the window, at 33 not.
	if res := b.resync(t, "alice", hotp(t, p, k, 33), hotp(t, p, k, 34)); res.Status != 401 || res.Body["remainingAttempts"] != 2.0 {
		t.Fatalf("a pair one past the window: %d %v", res.Status, res.Body)
	}
	if res := a.resync(t, "alice", hotp(t, p, k, 32), hotp(t, p, k, 33)); res.Status != 200 {
		t.Fatalf("the pair at the window's far edge: %d %v", res.Status, res.Body)
	}
	if st := state(t, ns, "alice"); ptr.Deref(st.HOTPCounter, 0) != 34 {
		t.Fatalf("counter %v, want 34", st.HOTPCounter)
	}

	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.HOTP.ResyncWindow = 0
	})
	testenv.Eventually(t, "resynchronisation to be off", func() bool {
		return a.resync(t, "alice", hotp(t, p, k, 40), hotp(t, p, k, 41)).Status == 403
	})
}
