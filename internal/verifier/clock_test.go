package verifier_test

import (
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/testenv"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

// A replica whose clock is ten minutes ahead of the API server's would find every right TOTP code wrong and
// lock its users out. It measures its clock against the API server's, and while it is off by more than the
// window absorbs it refuses TOTP codes with a 503 that counts nothing, is not ready, exports the offset and
// says so in a Warning Event naming itself; once its clock is right, it checks codes again. The clock is the
// test's, against the real API server's.
func TestAClockFaultNeverLocksAUserOut(t *testing.T) {
	ns, _ := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 0)
	clk := clocktesting.NewFakePassiveClock(time.Now())
	r := startReplica(t, env, verifier.Config{Namespace: ns, Policy: "webapp", Clock: clk, Replica: "replica-a"}, nil)
	testenv.Eventually(t, "the verifier to load the policy", func() bool { return r.Ready() == nil })
	p, k := enrolled(t, r, ns, "alice")

	clk.SetTime(time.Now().Add(10 * time.Minute))
	testenv.Eventually(t, "the replica to find its clock ahead", func() bool {
		err := r.Ready()
		return err != nil && strings.Contains(err.Error(), "clock")
	})
	for _, code := range []string{totp(t, p, k, time.Now().Add(30*time.Second)), "000000", "000001", "000002"} {
		if res := r.verify(t, "alice", code); res.Status != 503 || !strings.Contains(res.Body["error"].(string), "clock") {
			t.Fatalf("a code under a clock fault: %d %v", res.Status, res.Body)
		}
	}
	if st := state(t, ns, "alice"); st.FailedAttempts != 0 || st.LockedAt != nil {
		t.Fatalf("a clock fault was counted against the user: %+v", st)
	}
	// Another replica, whose clock is right, serves alice meanwhile.
	b := startVerifier(t, env, ns, "webapp")
	testenv.Eventually(t, "replica B to be ready", func() bool { return b.Ready() == nil })
	next := totp(t, p, k, time.Now().Add(30*time.Second))
	if res := b.verify(t, "alice", next); res.Status != 200 {
		t.Fatalf("a right code on the replica whose clock is right: %d %v", res.Status, res.Body)
	}
	ev := waitEvent(t, ns, "a ClockSkew Warning naming the replica", func(ev eventsv1.Event) bool {
		return ev.Reason == v1alpha1.EventReasonClockSkew && strings.Contains(ev.Note, "replica-a")
	})
	if ev.Type != "Warning" || ev.Regarding.Name != "webapp" {
		t.Errorf("ClockSkew Event: %s on %s", ev.Type, ev.Regarding.Name)
	}
	if text := metricsText(t, r); !strings.Contains(text, "kube2fa_clock_offset_seconds 59") && !strings.Contains(text, "kube2fa_clock_offset_seconds 60") {
		t.Errorf("the offset is not exported as about 600 s:\n%s", text)
	}

	clk.SetTime(time.Now())
	testenv.Eventually(t, "the replica to trust its clock again", func() bool { return r.Ready() == nil })
	// It checks codes again: B's is used, a wrong one counts.
	if res := r.verify(t, "alice", next); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("B's code on A once A's clock is right: %d %v", res.Status, res.Body)
	}
	if res := r.verify(t, "alice", "000000"); res.Status != 401 || res.result() != "rejected" {
		t.Fatalf("a wrong code once the clock is right: %d %v", res.Status, res.Body)
	}
}
