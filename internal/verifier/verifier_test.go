package verifier_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/scheme"
	"github.com/kube2fa/kube2fa/internal/testenv"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

func TestSelfEnrollConfirmAndVerifyAcrossReplicas(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 2)
	a, b := rs[0], rs[1]

	if res := a.verify(t, "alice", "123456"); res.Status != 403 || res.result() != "enrollment_required" {
		t.Fatalf("verify before enrolling: %d %v", res.Status, res.Body)
	}
	if res := call(t, "GET", a.url+"/v1/enrollments/alice", ""); res.Body["state"] != "None" {
		t.Fatalf("state before enrolling: %v", res.Body)
	}

	res := a.enroll(t, "alice", "")
	if res.Status != 201 || res.Body["state"] != "Pending" || res.Body["method"] != "TOTP" {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	uri, _ := res.Body["otpauthURI"].(string)
	qr, err := base64.StdEncoding.DecodeString(fmt.Sprint(res.Body["qrPNG"]))
	if !strings.HasPrefix(uri, "otpauth://totp/webapp:alice?") || err != nil || !strings.HasPrefix(string(qr), "\x89PNG") {
		t.Fatalf("provisioning material: uri %q, qr %d bytes (%v)", uri, len(qr), err)
	}
	if again := b.enroll(t, "alice", ""); again.Status != 200 || again.Body["otpauthURI"] != uri {
		t.Fatalf("enroll while pending: %d, same material %v", again.Status, again.Body["otpauthURI"] == uri)
	}
	// Only a POST shows the key: a GET (an SSRF, another container of the pod) reports the state alone.
	if got := call(t, "GET", b.url+"/v1/enrollments/alice", ""); got.Body["state"] != "Pending" || got.Body["method"] != "TOTP" ||
		got.Body["otpauthURI"] != nil || got.Body["qrPNG"] != nil {
		t.Fatalf("GET while pending: %v", got.Body)
	}
	if res := a.verify(t, "alice", "123456"); res.result() != "enrollment_required" {
		t.Fatalf("a pending enrollment was asked for a code: %v", res.Body)
	}

	p, k := key(t, ns, "alice")
	now := time.Now()
	if res := b.confirm(t, "alice", "000000"); res.Status != 401 || res.Body["remainingAttempts"] != 2.0 {
		t.Fatalf("wrong confirming code: %d %v", res.Status, res.Body)
	}
	code := totp(t, p, k, now)
	if res := b.confirm(t, "alice", code[:3]+" "+code[3:]); res.Status != 200 || res.result() != "confirmed" {
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}
	e := enrollment(t, ns, "alice")
	if !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionEnrolled) || state(t, ns, "alice").FailedAttempts != 0 {
		t.Fatalf("after confirming: %+v", e.Status)
	}
	got := call(t, "GET", a.url+"/v1/enrollments/alice", "")
	testenv.Eventually(t, "replica A to see the confirmation", func() bool {
		got = call(t, "GET", a.url+"/v1/enrollments/alice", "")
		return got.Body["state"] == "Confirmed"
	})
	if _, leaked := got.Body["otpauthURI"]; leaked {
		t.Fatal("provisioning material served after confirmation")
	}
	if res := a.enroll(t, "alice", ""); res.Status != 409 {
		t.Fatalf("enroll when confirmed: %d", res.Status)
	}

	// The confirming code was used: replaying it is refused on either replica, as already used and not as a
	// guess; the next step's code works once.
	if res := a.verify(t, "alice", code); res.Status != 401 || res.result() != "already_used" || len(res.Body) != 1 {
		t.Fatalf("replay of the confirming code: %d %v", res.Status, res.Body)
	}
	next := totp(t, p, k, now.Add(time.Duration(p.PeriodSeconds)*time.Second))
	if res := a.verify(t, "alice", next); res.Status != 200 || res.result() != "accepted" {
		t.Fatalf("verify: %d %v", res.Status, res.Body)
	}
	if res := a.verify(t, "alice", next); res.Status != 401 || res.result() != "already_used" { // a double submit
		t.Fatalf("double submit: %d %v", res.Status, res.Body)
	}
	if st := state(t, ns, "alice"); ptr.Deref(st.LastUsedStep, 0) != now.Unix()/30+1 {
		t.Fatalf("the accepted step was not recorded: %+v", st)
	}
	if res := b.verify(t, "alice", next); res.Status != 401 || res.result() != "already_used" {
		t.Fatalf("replay on the other replica: %d %v", res.Status, res.Body)
	}
	if st := state(t, ns, "alice"); st.FailedAttempts != 0 {
		t.Fatalf("replays were counted: %+v", st)
	}
}

// Wrong confirming codes lock a pending enrollment like any other: then even a POST shows no key.
func TestALockedPendingEnrollmentShowsNoProvisioningMaterial(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	if res := r.enroll(t, "mallory", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	for i := range 3 { // the default maxFailures, with no throttle: locked until an administrator acts
		r.confirm(t, "mallory", fmt.Sprintf("00000%d", i))
	}
	if e := enrollment(t, ns, "mallory"); !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked) {
		t.Fatalf("three wrong confirming codes did not lock: %+v", e.Status)
	}
	res := r.enroll(t, "mallory", "")
	if res.Status != 429 || res.Body["otpauthURI"] != nil || res.Body["qrPNG"] != nil {
		t.Fatalf("enroll while locked: %d %v", res.Status, res.Body)
	}
	if got := call(t, "GET", r.url+"/v1/enrollments/mallory", ""); got.Body["state"] != "Locked" || got.Body["otpauthURI"] != nil {
		t.Fatalf("GET while locked: %v", got.Body)
	}
}

func TestLockoutWithoutThrottleNeedsTheAdministrator(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	p, k := enrolled(t, r, ns, "alice")

	for i, want := range []float64{2, 1, 0} {
		res := r.verify(t, "alice", "00000"+fmt.Sprint(i))
		if res.Status != 401 || res.Body["remainingAttempts"] != want {
			t.Fatalf("wrong code %d: %d %v", i+1, res.Status, res.Body)
		}
	}
	res := r.verify(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second)))
	if res.Status != 429 || res.result() != "locked" || res.Header.Get("Retry-After") != "" || res.Body["retryAfterSeconds"] != nil {
		t.Fatalf("right code while locked until an admin unlocks: %d %v %v", res.Status, res.Header, res.Body)
	}
	e := enrollment(t, ns, "alice")
	if st := state(t, ns, "alice"); st.FailedAttempts != 3 || !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked) {
		t.Fatalf("lock state: %+v, %+v", st, e.Status)
	}
	lockedOut := waitEvent(t, ns, "a LockedOut Event", func(ev eventsv1.Event) bool {
		return ev.Reason == v1alpha1.EventReasonLockedOut && ev.Regarding.Name == ueName("alice")
	})
	if lockedOut.Type != corev1.EventTypeWarning {
		t.Errorf("a lockout is announced as %s, want a Warning", lockedOut.Type)
	}

	patch := client.MergeFrom(e.DeepCopy())
	metav1.SetMetaDataAnnotation(&e.ObjectMeta, v1alpha1.AnnotationUnlock, "ticket-7")
	if err := env.Client.Patch(ctx, e, patch); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the manager to unlock", func() bool {
		return meta.IsStatusConditionFalse(enrollment(t, ns, "alice").Status.Conditions, v1alpha1.ConditionLocked)
	})
	if res := r.verify(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second))); res.Status != 200 {
		t.Fatalf("right code after unlock: %d %v", res.Status, res.Body)
	}
}

// The replica decides on a fake clock an hour ahead of the manager's real one: the throttle ends when the
// test steps that clock, and the manager, which would end the lock on its own clock, does not come in
// between, however slow the machine.
func TestThrottledLockRefusesThenExpires(t *testing.T) {
	// HOTP: the test moves the replica's clock by hours, which a TOTP replica would rightly take for a clock
	// fault (TestAClockFaultNeverLocksAUserOut); the lock's timing is the same for both methods.
	s := spec(v1alpha1.ModeEnforced, v1alpha1.MethodHOTP)
	s.Lockout = &v1alpha1.LockoutSettings{MaxFailures: 2, ThrottleSeconds: ptr.To[int32](300)}
	ns, _ := setup(t, s, 0)
	clk := clocktesting.NewFakePassiveClock(time.Now().Add(time.Hour))
	r := startReplica(t, env, verifier.Config{Namespace: ns, Policy: "webapp", Clock: clk}, nil)
	testenv.Eventually(t, "the verifier to load the policy", func() bool { return r.Ready() == nil })
	if res := r.enroll(t, "alice", ""); res.Status != 201 {
		t.Fatalf("enroll: %d %v", res.Status, res.Body)
	}
	p, k := key(t, ns, "alice")
	if res := r.confirm(t, "alice", hotp(t, p, k, 0)); res.Status != 200 {
		t.Fatalf("confirm: %d %v", res.Status, res.Body)
	}

	clk.SetTime(clk.Now().Add(time.Minute))
	r.verify(t, "alice", "111111")
	if res := r.verify(t, "alice", "222222"); res.Status != 401 || res.Body["remainingAttempts"] != 0.0 {
		t.Fatalf("locking failure: %d %v", res.Status, res.Body)
	}
	clk.SetTime(clk.Now().Add(100 * time.Second))
	before := state(t, ns, "alice")
	res := r.verify(t, "alice", hotp(t, p, k, 1))
	if res.Status != 429 || res.Body["retryAfterSeconds"] == nil || res.Header.Get("Retry-After") == "" {
		t.Fatalf("right code while throttled: %d %v %v", res.Status, res.Header, res.Body)
	}
	if secs := res.Body["retryAfterSeconds"].(float64); secs < 199 || secs > 201 {
		t.Errorf("retryAfterSeconds = %v 100 s into a 300 s throttle, want about 200", secs)
	}
	r.verify(t, "alice", "333333")
	after := state(t, ns, "alice")
	if before.FailedAttempts != 2 || after.FailedAttempts != 2 || !after.LockedUntil.Equal(before.LockedUntil) {
		t.Fatalf("refused attempts changed the lock: %d failures until %v, then %d until %v",
			before.FailedAttempts, before.LockedUntil, after.FailedAttempts, after.LockedUntil)
	}

	clk.SetTime(before.LockedUntil.Time)
	if res := r.verify(t, "alice", hotp(t, p, k, 1)); res.Status != 200 {
		t.Fatalf("right code when the throttle ended: %d %v", res.Status, res.Body)
	}
	if st := state(t, ns, "alice"); st.FailedAttempts != 0 || st.LockedAt != nil || st.TemporaryLockouts != 0 {
		t.Fatalf("after expiry: %+v", st)
	}

	// With maxTemporaryLockouts 1, the first lock ends by itself and the second, without a success in
	// between, needs an administrator.
	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.Lockout.MaxTemporaryLockouts = ptr.To[int32](1)
	})
	testenv.Eventually(t, "the replica to decide by the bound", func() bool {
		p, err := verifier.ResolvedPolicy(r.Verifier, ctx)
		return err == nil && p.Lockout.MaxTemporaryLockouts == 1
	})
	for lock := range 2 {
		clk.SetTime(clk.Now().Add(10 * time.Minute))
		r.verify(t, "alice", "111111")
		if res := r.verify(t, "alice", "222222"); res.Status != 401 || res.Body["remainingAttempts"] != 0.0 {
			t.Fatalf("lock %d: %d %v", lock+1, res.Status, res.Body)
		}
		st := state(t, ns, "alice")
		if temporary := lock == 0; st.LockedAt == nil || (st.LockedUntil != nil) != temporary || st.TemporaryLockouts != 1 {
			t.Fatalf("lock %d: %+v", lock+1, st)
		}
	}
	clk.SetTime(clk.Now().Add(24 * time.Hour))
	if res := r.verify(t, "alice", hotp(t, p, k, 2)); res.Status != 429 || res.Header.Get("Retry-After") != "" {
		t.Fatalf("a day into the lock that needs an administrator: %d %v", res.Status, res.Body)
	}
}

// replicaCounts are the numbers of replicas the invariants are tested across.
var replicaCounts = []int{2, 10}

// confirmedEverywhere enrolls and confirms user through rs[0]. The other replicas need no waiting for: they
// read the enrollment from the API server on the user's first request, and a replica that remembered it
// unconfirmed reads it again before answering so.
func confirmedEverywhere(t *testing.T, ns string, rs []*replica, user string) (otp.Params, []byte) {
	t.Helper()
	p, k := enrolled(t, rs[0], ns, user)
	if enrollment(t, ns, user).Status.ConfirmedAt == nil {
		t.Fatalf("%s is not confirmed", user)
	}
	return p, k
}

func TestConcurrentWrongCodesNeverExceedMaxFailures(t *testing.T) {
	for _, n := range replicaCounts {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), n)
			confirmedEverywhere(t, ns, rs, "alice")
			statuses := hammer(50, func(i int) int { return rs[i%n].verify(t, "alice", fmt.Sprintf("%06d", i)).Status })
			e, st := enrollment(t, ns, "alice"), state(t, ns, "alice")
			if st.FailedAttempts != v1alpha1.DefaultMaxFailures || !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked) {
				t.Fatalf("after 50 concurrent wrong codes: %d failures, conditions %+v", st.FailedAttempts, e.Status.Conditions)
			}
			if statuses[401] != v1alpha1.DefaultMaxFailures || statuses[200] != 0 {
				t.Fatalf("answers %v: want exactly %d evaluated (401), the rest refused", statuses, v1alpha1.DefaultMaxFailures)
			}
			t.Logf("answers: %v", statuses)
		})
	}
}

func TestAValidCodeSubmittedConcurrentlyIsAcceptedOnce(t *testing.T) {
	for _, n := range replicaCounts {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), n)
			p, k := confirmedEverywhere(t, ns, rs, "alice")
			// 20 racing copies over the replicas: one acceptance, and the copies are refused as already used,
			// never counted (they used to lock the user out).
			code := totp(t, p, k, time.Now().Add(30*time.Second))
			answers := hammer(20, func(i int) string {
				res := rs[i%n].verify(t, "alice", code)
				return fmt.Sprint(res.Status, " ", res.result())
			})
			if answers["200 accepted"] != 1 || answers["401 already_used"] != 19 {
				t.Fatalf("answers %v: want exactly one acceptance and 19 already_used", answers)
			}
			if st := state(t, ns, "alice"); st.FailedAttempts != 0 || st.LastFailureAt != nil {
				t.Fatalf("replays were counted: %+v", st)
			}
		})
	}
}

func hammer[K comparable](n int, f func(i int) K) map[K]int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	counts := map[K]int{}
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s := f(i)
			mu.Lock()
			counts[s]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return counts
}

func TestPolicyEditsApplyWithoutRestart(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeOptional, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	if res := r.verify(t, "bob", "123456"); res.result() != "not_required" {
		t.Fatalf("Optional, not enrolled: %v", res.Body)
	}
	p, k := enrolled(t, r, ns, "alice")
	if res := r.verify(t, "alice", "000000"); res.Status != 401 {
		t.Fatalf("Optional, enrolled, wrong code: %d", res.Status)
	}

	start := time.Now()
	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.Mode = v1alpha1.ModeEnforced
		s.TOTP = &v1alpha1.TOTPSettings{Digits: 8}
	})
	testenv.Eventually(t, "Enforced to apply", func() bool { return r.verify(t, "bob", "123456").result() == "enrollment_required" })
	t.Logf("the policy edit applied after %v", time.Since(start)) // a figure, not an assertion: see make bench
	// alice keeps her 6-digit authenticator; a newcomer gets 8 digits.
	if res := r.verify(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second))); res.Status != 200 {
		t.Fatalf("a confirmed enrollment broke when digits changed: %d %v", res.Status, res.Body)
	}
	if res := r.enroll(t, "carol", ""); res.Status != 201 || !strings.Contains(fmt.Sprint(res.Body["otpauthURI"]), "digits=8") {
		t.Fatalf("a new enrollment did not get 8 digits: %v", res.Body)
	}

	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) { s.Mode = v1alpha1.ModeDisabled })
	testenv.Eventually(t, "Disabled to apply", func() bool { return r.verify(t, "bob", "123456").result() == "not_required" })
	before := state(t, ns, "alice").FailedAttempts
	if res := r.verify(t, "alice", "000000"); res.Status != 200 || res.result() != "not_required" {
		t.Fatalf("Disabled, enrolled: %d %v", res.Status, res.Body)
	}
	if res := r.enroll(t, "dave", ""); res.Status != 403 {
		t.Fatalf("self-enrollment while Disabled: %d %v", res.Status, res.Body)
	}
	if after := state(t, ns, "alice").FailedAttempts; after != before {
		t.Errorf("Disabled counted a code: %d → %d failures", before, after)
	}
}

func TestHOTPLookAheadAndCounterAdvance(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP, v1alpha1.MethodHOTP), 1)
	r := rs[0]
	if res := r.enroll(t, "alice", "HOTP"); res.Status != 201 || !strings.Contains(fmt.Sprint(res.Body["otpauthURI"]), "counter=0") {
		t.Fatalf("HOTP enroll: %d %v", res.Status, res.Body)
	}
	p, k := key(t, ns, "alice")
	if res := r.confirm(t, "alice", hotp(t, p, k, 0)); res.Status != 200 {
		t.Fatalf("confirm with counter 0: %v", res.Body)
	}
	if res := r.verify(t, "alice", hotp(t, p, k, 5)); res.Status != 200 { // look-ahead 4 from counter 1
		t.Fatalf("code at the edge of the look-ahead: %d %v", res.Status, res.Body)
	}
	if c := state(t, ns, "alice").HOTPCounter; c == nil || *c != 6 {
		t.Fatalf("counter after accepting 5 = %v, want 6", c)
	}
	if res := r.verify(t, "alice", hotp(t, p, k, 3)); res.Status != 401 {
		t.Fatalf("a code behind the counter was accepted: %d", res.Status)
	}
}

func TestBadRequestsAreRefusedAndNotCounted(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	enrolled(t, r, ns, "alice")
	for name, body := range map[string]string{
		"not JSON":      `user=alice&code=1`,
		"no user":       `{"code":"123456"}`,
		"unknown field": `{"user":"alice","code":"123456","remember":true}`,
		"two values":    `{"user":"alice","code":"1"}{"user":"alice","code":"2"}`,
		"over 4 KiB":    `{"user":"alice","code":"` + strings.Repeat("1", verifier.MaxBodyBytes) + `"}`,
		// Go's decoder alone would check alice's code for these (case-insensitive keys, last duplicate wins).
		"a key in another case": `{"user":"bob","USER":"alice","code":"000000"}`,
		"a key twice":           `{"user":"bob","code":"000000","user":"alice"}`,
		"trailing data":         `{"user":"alice","code":"000000"} x`,
		"invalid UTF-8":         "{\"user\":\"alice\xff\",\"code\":\"000000\"}",
		"a lone surrogate":      `{"user":"alice\udc00","code":"000000"}`,
		"a control character":   `{"user":"alice\u0000","code":"000000"}`,
		"a bidi override":       `{"user":"\u202ealice","code":"000000"}`,
		"a 257-character user":  `{"user":"` + strings.Repeat("a", 257) + `","code":"000000"}`,
	} {
		if res := call(t, "POST", r.url+"/v1/verify", body); res.Status != 400 || res.Body["error"] == nil {
			t.Errorf("%s: %d %v, want 400 with a reason", name, res.Status, res.Body)
		}
	}
	if res := r.enroll(t, "bob", "SMS"); res.Status != 400 {
		t.Errorf("unknown method: %d", res.Status)
	}
	for _, tt := range []struct{ method, path, allow string }{
		{"GET", "/v1/verify", "POST"},
		{"DELETE", "/v1/enrollments/alice", "GET"},
		{"PUT", "/v1/enrollments", "POST"},
		{"GET", "/v1/enrollments/alice/confirm", "POST"},
		{"POST", "/healthz", "GET"},
	} {
		// JSON like every other error, with the method that is allowed (the mux's own 405 is plain text).
		if res := call(t, tt.method, r.url+tt.path, ""); res.Status != http.StatusMethodNotAllowed ||
			res.Header.Get("Allow") != tt.allow || res.Body["error"] == nil {
			t.Errorf("%s %s: %d, Allow %q, %v", tt.method, tt.path, res.Status, res.Header.Get("Allow"), res.Body)
		}
	}
	if res := call(t, "GET", r.url+"/v2/verify", ""); res.Status != http.StatusNotFound || res.Body["error"] == nil {
		t.Errorf("an unknown path: %d %v", res.Status, res.Body)
	}
	if res := call(t, "POST", r.url+"/v1/verify", `{"user":"alice"}`); res.Status != 400 || res.Body["error"] == nil {
		t.Errorf("no code: %d %v", res.Status, res.Body)
	}
	if st := state(t, ns, "alice"); st.FailedAttempts != 0 {
		t.Fatalf("bad requests were counted as failures: %d", st.FailedAttempts)
	}
	// A malformed code is a wrong code.
	if res := r.verify(t, "alice", "12ab56"); res.Status != 401 {
		t.Errorf("malformed code: %d", res.Status)
	}
}

func TestMetricsCountDecisionsWithoutUserNamesOrKeys(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	enrolled(t, r, ns, "alice-in-metrics")
	r.verify(t, "alice-in-metrics", "000000")

	res, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(res.Body)
	text := string(body)
	for _, want := range []string{`kube2fa_verifications_total{result="confirmed"} 1`, `kube2fa_verifications_total{result="rejected"} 1`,
		"kube2fa_lockouts_total 0", "kube2fa_verifier_request_duration_seconds_bucket"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	_, k := key(t, ns, "alice-in-metrics")
	if strings.Contains(text, "alice-in-metrics") || strings.Contains(text, otp.EncodeSecret(k)) {
		t.Error("metrics name a user or hold key material")
	}
}

// Anyone allowed to create ConfigMaps in the namespace could replace the policy's with a copy of their own
// saying Disabled. The verifier obeys only the ConfigMap that its TwoFactorPolicy controls: a copy without
// an owner, or with a forged one, stops it (503, not ready) rather than turning 2FA off.
func TestTheVerifierObeysOnlyTheConfigMapItsPolicyControls(t *testing.T) {
	ns := env.Namespace(t)
	stopManager := env.StartManager(t, controllers.Options{})
	p := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp"},
		Spec: spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP)}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	r := startVerifier(t, env, ns, "webapp")
	testenv.Eventually(t, "the verifier to load the policy", func() bool { return r.Ready() == nil })
	if res := r.verify(t, "alice", "123456"); res.result() != "enrollment_required" {
		t.Fatalf("before the forgery: %d %v", res.Status, res.Body)
	}
	stopManager() // it would re-create its own ConfigMap; the verifier must hold without it

	disabled := p.DeepCopy()
	disabled.Spec.Mode = v1alpha1.ModeDisabled
	for name, owners := range map[string][]metav1.OwnerReference{
		"no owner": nil,
		"a forged owner": {{APIVersion: v1alpha1.GroupVersion.String(), Kind: "TwoFactorPolicy", Name: "webapp",
			UID: "forged", Controller: ptr.To(true)}},
	} {
		t.Run(name, func(t *testing.T) {
			forged, err := render.VerifierConfigMap(disabled)
			if err != nil {
				t.Fatal(err)
			}
			forged.OwnerReferences = owners
			if err := env.Client.Delete(ctx, forged); client.IgnoreNotFound(err) != nil {
				t.Fatal(err)
			}
			if err := env.Client.Create(ctx, forged); err != nil {
				t.Fatal(err)
			}
			// Until its watch shows the forgery, the replica decides by the policy it trusted (or, between the
			// deletion and the forgery, has none: 503); then it refuses the forgery. Never does it answer as the
			// forgery says.
			testenv.Eventually(t, "a wrong code under a forged Disabled policy to be refused for the forgery", func() bool {
				res := r.verify(t, "alice", "123456")
				if res.Status != 503 && res.result() != "enrollment_required" {
					t.Fatalf("a wrong code under a forged Disabled policy: %d %v", res.Status, res.Body)
				}
				msg, _ := res.Body["error"].(string)
				return res.Status == 503 && strings.Contains(msg, "is not controlled by TwoFactorPolicy")
			})
			if err := r.Ready(); err == nil {
				t.Error("the verifier is ready on a ConfigMap its policy does not control")
			}
			waitEvent(t, ns, "a ConfigMapNotTrusted Warning on the policy", func(ev eventsv1.Event) bool {
				return ev.Reason == v1alpha1.EventReasonConfigMapNotTrusted && ev.Type == corev1.EventTypeWarning &&
					ev.Regarding.Kind == "TwoFactorPolicy" && ev.Regarding.Name == "webapp"
			})
		})
	}
}

// Under Optional, a pending user is not asked for a code. A confirmed user whose key Secret is deleted (by
// hand, a cleanup tool, a restore that did not carry it) must not become such a user: every code is refused
// as reenrollment_required until an administrator acts, and nothing ever answers not_required meanwhile.
func TestALostKeyNeverLowersTheBar(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeOptional, v1alpha1.MethodTOTP), 1)
	r := rs[0]
	p, k := enrolled(t, r, ns, "alice")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.SecretName(ueName("alice"))}}
	if err := env.Client.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "alice's codes to be refused as reenrollment_required", func() bool {
		// Until the deletion reaches the replica it still checks codes with the key it holds, and after that
		// fails closed (503) until the manager marks the key lost: never not_required.
		res := r.verify(t, "alice", totp(t, p, k, time.Now().Add(30*time.Second)))
		if res.result() == "not_required" {
			t.Fatalf("a lost key lowered the bar: %d %v", res.Status, res.Body)
		}
		return res.Status == 403 && res.result() == "reenrollment_required"
	})
	if res := r.enroll(t, "alice", ""); res.Status != 409 || res.Body["otpauthURI"] != nil {
		t.Fatalf("self-enrollment over a lost key: %d %v", res.Status, res.Body)
	}
}

// An administrator switches a policy from Disabled to Enforced during an incident while a replica is cut off
// from the API server. The replica must not keep answering not_required from its stale cache: within its
// staleness bound it answers 503 and is not ready, and once it reaches the API server again it obeys the
// new policy.
func TestAReplicaCutOffFromTheClusterStopsAnswering(t *testing.T) {
	ns, _ := setup(t, spec(v1alpha1.ModeDisabled), 0)
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	link := newPartition(t, u.Host)
	const bound = 2 * time.Second
	r := startReplica(t, env, verifier.Config{Namespace: ns, Policy: "webapp", MaxStaleness: bound}, link)
	testenv.Eventually(t, "the verifier to load the policy", func() bool { return r.Ready() == nil })
	if res := r.verify(t, "bob", "123456"); res.result() != "not_required" {
		t.Fatalf("Disabled: %d %v", res.Status, res.Body)
	}

	link.Cut()
	cut := time.Now()
	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.Mode, s.Methods = v1alpha1.ModeEnforced, []v1alpha1.Method{v1alpha1.MethodTOTP}
	})
	testenv.Eventually(t, "the cut-off replica to refuse", func() bool {
		res := r.verify(t, "bob", "123456")
		if res.result() == "not_required" && time.Since(cut) > 2*bound {
			t.Fatalf("%v after the cut the replica still answers from its stale policy: %v", time.Since(cut), res.Body)
		}
		return res.Status == 503
	})
	if r.Ready() == nil {
		t.Error("a replica that cannot confirm its policy is current is ready")
	}

	link.Heal()
	testenv.Eventually(t, "the replica to obey the new policy", func() bool {
		return r.verify(t, "bob", "123456").result() == "enrollment_required"
	})
}

// Served over the network, the verifier answers only callers it can identify (a ServiceAccount token for
// audience kube2fa) and whom RBAC allows to create twofactorpolicies/verify of its policy. Anyone else is
// refused before the request is read: a wrong code from them counts nothing.
func TestOverTheNetworkOnlyAllowedCallersAreServed(t *testing.T) {
	ns, rs := setup(t, spec(v1alpha1.ModeEnforced, v1alpha1.MethodTOTP), 1)
	p, k := enrolled(t, rs[0], ns, "alice")

	cfg := verifierUser(t, env, ns, "webapp")
	reviews := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "review-" + ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}}}}
	allowed := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "verify-webapp"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"twofactorpolicies/verify"},
			ResourceNames: []string{"webapp"}, Verbs: []string{"create"}}}}
	for _, o := range []client.Object{reviews, allowed,
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "review-" + ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reviews.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "verifier-webapp-" + ns}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "verify-webapp"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: allowed.Name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: ns}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stranger"}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	c, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	running, err := verifier.Start(c, verifier.Config{Rest: cfg, Scheme: scheme.Scheme, Namespace: ns, Policy: "webapp"})
	if err != nil {
		t.Fatal(err)
	}
	callers, err := verifier.NewCallers(cfg, ns, "webapp")
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Now())
	verifier.RememberCallersBy(callers, clk)
	reg := prometheus.NewRegistry()
	h := &verifier.Handler{V: running.Verifier, Metrics: verifier.NewMetrics(reg), Log: logr.Discard(), Ready: running.Ready,
		Gatherer: reg, Callers: callers}
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
	testenv.Eventually(t, "the networked verifier to be ready", func() bool { return running.Ready() == nil })

	token := func(sa string, audiences ...string) string {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}}
		if err := env.Client.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}, tr); err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	verifyAt := func(url, authorization, code string) response {
		req, _ := http.NewRequest("POST", url+"/v1/verify", strings.NewReader(fmt.Sprintf(`{"user":"alice","code":%q}`, code)))
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		out := response{Status: res.StatusCode, Header: res.Header}
		_ = json.NewDecoder(res.Body).Decode(&out.Body)
		return out
	}
	verify := func(authorization, code string) response { return verifyAt(srv.URL, authorization, code) }

	app := token("app", verifier.CallerAudience)
	for name, tt := range map[string]struct {
		authorization string
		status        int
	}{
		"no token":                        {"", 401},
		"a forged token":                  {"Bearer not-a-token", 401},
		"a token for the API server":      {"Bearer " + token("app"), 401},
		"the right token, another scheme": {"Basic " + app, 401},
		"a caller without the permission": {"Bearer " + token("stranger", verifier.CallerAudience), 403},
	} {
		if res := verify(tt.authorization, "000000"); res.Status != tt.status || res.result() != "" {
			t.Errorf("%s: %d %v, want %d before any code is read", name, res.Status, res.Body, tt.status)
		}
	}
	if st := state(t, ns, "alice"); st.FailedAttempts != 0 {
		t.Fatalf("refused callers' wrong codes were counted: %d failures", st.FailedAttempts)
	}
	if res := verify("Bearer "+app, totp(t, p, k, time.Now().Add(30*time.Second))); res.Status != 200 || res.result() != "accepted" {
		t.Fatalf("the allowed caller's right code: %d %v", res.Status, res.Body)
	}
	if res := verify("bearer "+app, "000000"); res.Status != 401 || res.result() != "rejected" { // RFC 6750: any case
		t.Fatalf("the allowed caller's wrong code, scheme in lower case: %d %v", res.Status, res.Body)
	}

	// A verifier that cannot review its callers (its identity may not create TokenReviews) fails closed.
	blind, err := verifier.NewCallers(verifierUser(t, env, ns, "blind"), ns, "webapp")
	if err != nil {
		t.Fatal(err)
	}
	blindSrv := httptest.NewServer((&verifier.Handler{V: running.Verifier, Metrics: verifier.NewMetrics(prometheus.NewRegistry()),
		Log: logr.Discard(), Ready: running.Ready, Gatherer: reg, Callers: blind}).Routes())
	t.Cleanup(blindSrv.Close)
	if res := verifyAt(blindSrv.URL, "Bearer "+app, "000000"); res.Status != 503 || res.result() != "" {
		t.Errorf("callers that cannot be reviewed: %d %v, want 503 before any code is read", res.Status, res.Body)
	}

	// A verdict is remembered for a while, not for ever: a revoked permission refuses the caller once it has
	// passed.
	if err := env.Client.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "verify-webapp"}}); err != nil {
		t.Fatal(err)
	}
	if res := verify("Bearer "+app, "000000"); res.Status != 401 || res.result() != "rejected" {
		t.Fatalf("within its verdict's lifetime, the caller is still served: %d %v", res.Status, res.Body)
	}
	testenv.Eventually(t, "the revoked caller to be refused", func() bool {
		clk.Step(verifier.CallerVerdictLifetime + time.Second)
		return verify("Bearer "+app, "000000").Status == 403
	})
	if st := state(t, ns, "alice"); st.FailedAttempts != 2 {
		t.Errorf("failures counted: %d, want the allowed caller's 2", st.FailedAttempts)
	}
	if res := call(t, "GET", srv.URL+"/readyz", ""); res.Status != 200 {
		t.Errorf("the readiness probe needs no token: %d", res.Status)
	}
}
