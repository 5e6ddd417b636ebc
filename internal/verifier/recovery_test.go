package verifier_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

func (r *replica) recover(t *testing.T, user, code string) response {
	return call(t, "POST", r.url+"/v1/verify", fmt.Sprintf(`{"user":%q,"recoveryCode":%q}`, user, code))
}

func (r *replica) regenerate(t *testing.T, user, code string) response {
	return call(t, "POST", r.url+"/v1/enrollments/"+user+"/recovery-codes", fmt.Sprintf(`{"code":%q}`, code))
}

// codesOf returns the recovery codes of an answer.
func codesOf(t *testing.T, res response) []string {
	t.Helper()
	raw, ok := res.Body["recoveryCodes"].([]any)
	if !ok {
		t.Fatalf("no recovery codes in %d %v", res.Status, res.Body)
	}
	out := make([]string, len(raw))
	for i, c := range raw {
		out[i] = c.(string)
	}
	return out
}

// Recovery codes come with the confirmation, once; each is accepted once across replicas, in place of a
// code, as typed (case and spaces do not matter); a used one is refused without counting, a wrong one
// counts; status shows how many are left and a Warning Event says one was used; a regeneration, which costs
// a valid code, voids every earlier code. No code is in status, in an Event or in a GET.
func TestRecoveryCodesAcrossReplicas(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 2)
	a, b := rs[0], rs[1]
	if res := a.enroll(t, "alice", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	p, k := key(t, ns, "alice")
	confirmed := b.confirm(t, "alice", totp(t, p, k, time.Now()))
	codes := codesOf(t, confirmed)
	if confirmed.Status != 200 || len(codes) != v1alpha1.DefaultRecoveryCodes {
		t.Fatalf("confirm: %d, %d codes", confirmed.Status, len(codes))
	}
	if e := enrollment(t, ns, "alice"); ptr.Deref(e.Status.RecoveryCodesRemaining, -1) != 10 {
		t.Fatalf("status after confirming: %+v", e.Status)
	}
	if got := call(t, "GET", a.url+"/v1/enrollments/alice", ""); got.Body["recoveryCodes"] != nil {
		t.Fatal("a GET returned recovery codes")
	}

	typed := strings.ToLower(strings.ReplaceAll(codes[3], "-", " "))
	if res := a.recover(t, "alice", typed); res.Status != 200 || res.result() != "accepted" || res.Body["recoveryCodesRemaining"] != 9.0 {
		t.Fatalf("a recovery code: %d %v", res.Status, res.Body)
	}
	if res := b.recover(t, "alice", codes[3]); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("the same code on the other replica: %d %v", res.Status, res.Body)
	}
	if res := b.recover(t, "alice", "AAAA-BBBB-CCCC-DDDD"); res.Status != 401 || res.Body["remainingAttempts"] != 2.0 {
		t.Fatalf("a wrong recovery code is not counted as a failure: %d %v", res.Status, res.Body)
	}
	if e := enrollment(t, ns, "alice"); ptr.Deref(e.Status.RecoveryCodesRemaining, -1) != 9 {
		t.Fatalf("remaining after one use: %v", e.Status.RecoveryCodesRemaining)
	}
	used := waitEvent(t, ns, "a RecoveryCodeUsed Event", func(ev eventsv1.Event) bool {
		return ev.Reason == v1alpha1.EventReasonRecoveryCodeUsed && ev.Type == "Warning"
	})
	if !strings.Contains(used.Note, "9 left") {
		t.Errorf("RecoveryCodeUsed Event: %q", used.Note)
	}

	// Racing copies of one code over both replicas: one acceptance, the rest already used, none counted.
	answers := hammer(20, func(i int) string {
		res := rs[i%2].recover(t, "alice", codes[5])
		return fmt.Sprint(res.Status, " ", res.result())
	})
	if answers["200 accepted"] != 1 || answers["401 already_used"] != 19 {
		t.Fatalf("racing copies of one recovery code: %v", answers)
	}

	// A regeneration costs a valid code and voids every earlier code, used or not.
	if res := a.regenerate(t, "alice", "000000"); res.Status != 401 || res.Body["recoveryCodes"] != nil {
		t.Fatalf("a regeneration for a wrong code: %d %v", res.Status, res.Body)
	}
	regenerated := b.regenerate(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second)))
	fresh := codesOf(t, regenerated)
	if regenerated.Status != 200 || regenerated.result() != "regenerated" || len(fresh) != 10 || fresh[0] == codes[0] {
		t.Fatalf("regeneration: %d %v", regenerated.Status, regenerated.Body)
	}
	if res := a.recover(t, "alice", codes[4]); res.Status != 401 || res.result() != "rejected" {
		t.Fatalf("an unused code of the voided set: %d %v", res.Status, res.Body)
	}
	if res := a.recover(t, "alice", fresh[4]); res.Status != 200 {
		t.Fatalf("a new code: %d %v", res.Status, res.Body)
	}

	// Nothing in status, in the state Lease or in the Events holds a code.
	st, _ := json.Marshal(enrollment(t, ns, "alice").Status)
	lease, _ := json.Marshal(stateLease(t, ns, "alice"))
	var events eventsv1.EventList
	if err := env.Client.List(ctx, &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	evs, _ := json.Marshal(events)
	for _, c := range append(codes, fresh...) {
		for where, raw := range map[string][]byte{"status": st, "state Lease": lease, "Events": evs} {
			if strings.Contains(string(raw), c) || strings.Contains(string(raw), strings.ReplaceAll(c, "-", "")) {
				t.Fatalf("a recovery code in the %s", where)
			}
		}
	}
}

// A locked enrollment refuses recovery codes like codes; a policy without recovery codes refuses them all,
// counting nothing.
func TestRecoveryCodesRespectTheLockAndThePolicy(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	if res := r.enroll(t, "alice", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	p, k := key(t, ns, "alice")
	codes := codesOf(t, r.confirm(t, "alice", totp(t, p, k, time.Now())))
	for i := range 3 {
		r.recover(t, "alice", fmt.Sprintf("AAAA-BBBB-CCCC-DDD%d", i))
	}
	if res := r.recover(t, "alice", codes[0]); res.Status != 429 || res.result() != "locked" {
		t.Fatalf("a recovery code while locked: %d %v", res.Status, res.Body)
	}

	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.RecoveryCodes = ptr.To[int32](0)
	})
	testenv.Eventually(t, "the replica to see recovery codes off", func() bool {
		return r.recover(t, "alice", codes[1]).Status == 403
	})
	if st := state(t, ns, "alice"); st.FailedAttempts != 3 {
		t.Fatalf("refusals were counted: %+v", st)
	}
}
