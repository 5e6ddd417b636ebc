package controllers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

func TestEnrollmentGetsItsOwnImmutableKeySecret(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	createEnrollment(t, ns, "alice", "webapp", "alice@example.com")

	e := waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
	s := getSecret(t, ns, "alice-otp")

	if !metav1.IsControlledBy(s, e) {
		t.Errorf("secret is not controlled by the enrollment: %v", s.OwnerReferences)
	}
	wantLabels := map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelPolicy: "webapp"}
	if !mapsEqual(s.Labels, wantLabels) {
		t.Errorf("secret labels = %v, want only %v", s.Labels, wantLabels)
	}
	if s.Type != v1alpha1.SecretTypeOTP || !ptr.Deref(s.Immutable, false) {
		t.Errorf("secret type %q immutable %v, want %q and immutable", s.Type, s.Immutable, v1alpha1.SecretTypeOTP)
	}
	params, key, err := render.ParseOTPSecret(s)
	if err != nil {
		t.Fatalf("secret does not parse: %v", err)
	}
	if len(key) != v1alpha1.DefaultSecretBytes {
		t.Errorf("key is %d bytes, want %d", len(key), v1alpha1.DefaultSecretBytes)
	}
	if params != (otp.Params{Method: v1alpha1.MethodTOTP, Algorithm: v1alpha1.AlgorithmSHA1, Digits: 6, PeriodSeconds: 30}) {
		t.Errorf("parameter snapshot = %+v", params)
	}
	u, err := url.Parse(string(s.Data[render.SecretKeyURI]))
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("issuer") != "webapp" ||
		u.Query().Get("secret") != string(s.Data[render.SecretKeySecret]) || !strings.Contains(u.Path, "alice@example.com") {
		t.Errorf("provisioning URI %v does not match the key and parameters (err %v)", u.Redacted(), err)
	}
	if img, err := png.Decode(bytes.NewReader(s.Data[render.SecretKeyQR])); err != nil || img.Bounds().Dx() != render.QRSize {
		t.Errorf("QR code is not a %dpx PNG: %v", render.QRSize, err)
	}

	if e.Status.SecretName != "alice-otp" || e.Status.SecretUID != string(s.UID) || e.Status.Method != v1alpha1.MethodTOTP {
		t.Errorf("status = name %q uid %q method %q", e.Status.SecretName, e.Status.SecretUID, e.Status.Method)
	}
	if c := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionEnrolled); c == nil || c.Reason != v1alpha1.ReasonPendingConfirmation {
		t.Errorf("Enrolled = %+v, want False/PendingConfirmation", c)
	}
	if !meta.IsStatusConditionFalse(e.Status.Conditions, v1alpha1.ConditionLocked) {
		t.Errorf("Locked is not False: %+v", e.Status.Conditions)
	}

	// An immutable Secret cannot have its key changed, by us or anyone.
	s.Data[render.SecretKeySecret] = []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	if err := env.Client.Update(ctx, s); err == nil {
		t.Error("the API server accepted a change of the key")
	}

	// The key appears nowhere but in the Secret.
	status, _ := json.Marshal(e.Status)
	if strings.Contains(string(status), string(getSecret(t, ns, "alice-otp").Data[render.SecretKeySecret])) {
		t.Error("key material found in status")
	}
}

func TestKeysNeverChangeAcrossManagerRestartsAndPolicyEdits(t *testing.T) {
	ns := env.Namespace(t)
	stop := startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	names := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"}
	for _, n := range names {
		createEnrollment(t, ns, n, "webapp", n)
	}
	before := map[string]*corev1.Secret{}
	for _, n := range names {
		waitCondition(t, ns, n, v1alpha1.ConditionReady, metav1.ConditionTrue, "")
		before[n] = getSecret(t, ns, render.SecretName(n))
	}

	stop()
	// While the manager is down, the policy changes every parameter of new keys.
	p := testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.TOTP = &v1alpha1.TOTPSettings{Algorithm: v1alpha1.AlgorithmSHA256, Digits: 8, PeriodSeconds: 60}
		s.SecretBytes = 32
	})
	startManager(t)
	createEnrollment(t, ns, "newcomer", "webapp", "newcomer")
	waitCondition(t, ns, "newcomer", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	waitPolicyObserved(t, p)

	for _, n := range names {
		after := getSecret(t, ns, render.SecretName(n))
		if after.UID != before[n].UID || !bytes.Equal(after.Data[render.SecretKeySecret], before[n].Data[render.SecretKeySecret]) ||
			string(after.Data[render.SecretKeyDigits]) != "6" {
			t.Errorf("%s: key or parameters changed across a restart and a policy edit", n)
		}
		if e := getEnrollment(t, ns, n); e.Status.SecretUID != string(before[n].UID) {
			t.Errorf("%s: status bound to another secret", n)
		}
	}
	params, key, err := render.ParseOTPSecret(getSecret(t, ns, "newcomer-otp"))
	if err != nil || len(key) != 32 || params.Algorithm != v1alpha1.AlgorithmSHA256 || params.Digits != 8 || params.PeriodSeconds != 60 {
		t.Errorf("a new enrollment did not get the new parameters: %+v, %d-byte key, %v", params, len(key), err)
	}
}

// The manager ends a throttled lock at lockedUntil with no event to wake it: it requeues itself for then.
// Its clock is a fake one that the test steps, so the test waits no real throttle time.
func TestThrottledLockEndsByItself(t *testing.T) {
	ns := env.Namespace(t)
	clk := clocktesting.NewFakeClock(time.Now())
	env.StartManager(t, controllers.Options{MaxConcurrentReconciles: 4, Clock: clk})
	spec := enforcedTOTP()
	throttle := 300 * time.Second
	spec.Lockout = &v1alpha1.LockoutSettings{MaxFailures: 3, ThrottleSeconds: ptr.To(int32(throttle.Seconds()))}
	createPolicy(t, ns, "webapp", spec)
	createEnrollment(t, ns, "alice", "webapp", "alice")
	waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, "")

	recordAttemptsAt(t, ns, "alice", enrollment.Settings{MaxFailures: 3, Throttle: throttle}, 3, false, clk.Now)
	e := waitCondition(t, ns, "alice", v1alpha1.ConditionLocked, metav1.ConditionTrue, v1alpha1.ReasonTooManyFailures)
	_, st := stateLease(t, e)
	if st == nil || st.LockedUntil == nil {
		t.Fatalf("three wrong codes did not lock with a throttle: %+v", st)
	}
	lockedUntil := st.LockedUntil.Time

	// Step the manager's clock second by second until the lock ends: the requeue it scheduled for
	// lockedUntil is what ends it.
	testenv.EventuallyErr(t, "the lock to end by itself", func() (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(e), e); err != nil {
			return false, err
		}
		if meta.IsStatusConditionFalse(e.Status.Conditions, v1alpha1.ConditionLocked) {
			return true, nil
		}
		clk.Step(time.Second)
		return false, nil
	})
	waitEvent(t, ns, "alice", corev1.EventTypeNormal, v1alpha1.EventReasonLockExpired)
	if clk.Now().Before(lockedUntil) {
		t.Errorf("unlocked at %v, before the throttle ended at %v", clk.Now(), lockedUntil)
	}
}

// Pending self-enrollments cost etcd space that the whole cluster shares: one never confirmed goes, with its
// key, once the policy's pendingExpirySeconds have passed on the manager's (fake) clock. What an
// administrator created, and what was confirmed, stays.
func TestUnconfirmedSelfEnrollmentsExpire(t *testing.T) {
	ns := env.Namespace(t)
	clk := clocktesting.NewFakeClock(time.Now())
	env.StartManager(t, controllers.Options{MaxConcurrentReconciles: 4, Clock: clk})
	spec := enforcedTOTP()
	spec.SelfEnrollment = &v1alpha1.SelfEnrollmentSettings{PendingExpirySeconds: 60}
	createPolicy(t, ns, "webapp", spec)
	self := func(name string) *v1alpha1.UserEnrollment {
		e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{v1alpha1.LabelSelfEnrolled: "true"}},
			Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: name}}
		if err := env.Client.Create(ctx, e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	pending, confirmed := self("pending"), self("confirmed")
	createEnrollment(t, ns, "by-admin", "webapp", "by-admin")
	for _, n := range []string{"pending", "confirmed", "by-admin"} {
		waitCondition(t, ns, n, v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	}
	recordAttemptsAt(t, ns, confirmed.Name, enrollment.Settings{MaxFailures: 3}, 1, true, clk.Now)
	waitCondition(t, ns, confirmed.Name, v1alpha1.ConditionEnrolled, metav1.ConditionTrue, "")

	testenv.EventuallyErr(t, "the pending self-enrollment to expire", func() (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(pending), &v1alpha1.UserEnrollment{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		clk.Step(time.Second)
		return false, err
	})
	if deadline := pending.CreationTimestamp.Add(60 * time.Second); clk.Now().Before(deadline) {
		t.Errorf("expired at %v, before %v", clk.Now(), deadline)
	}
	waitEvent(t, ns, "pending", corev1.EventTypeNormal, v1alpha1.EventReasonExpired)
	clk.Step(time.Hour)
	for _, n := range []string{"confirmed", "by-admin"} {
		waitCondition(t, ns, n, v1alpha1.ConditionReady, metav1.ConditionTrue, "") // still there
	}
}

func TestUnlockAnnotationClearsALockOnce(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP()) // throttle 0: only an administrator unlocks
	createEnrollment(t, ns, "alice", "webapp", "alice")
	waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	settings := enrollment.Settings{MaxFailures: 3}

	recordAttempts(t, ns, "alice", settings, 3, false)
	if _, st := stateLease(t, getEnrollment(t, ns, "alice")); st.LockedUntil != nil || !enrollment.IsLocked(st, time.Now().Add(24*time.Hour)) {
		t.Fatalf("throttle 0 did not lock until an administrator unlocks: %+v", st)
	}
	annotate(t, ns, "alice", v1alpha1.AnnotationUnlock, "ticket-1")
	e := waitCondition(t, ns, "alice", v1alpha1.ConditionLocked, metav1.ConditionFalse, "")
	// The lock is cleared where it lives, the state Lease, before the condition shows it.
	if _, st := stateLease(t, e); e.Status.LastHandledUnlock != "ticket-1" || st.FailedAttempts != 0 || st.LockedAt != nil {
		t.Errorf("unlock not recorded: %+v, %+v", e.Status, st)
	}

	// Locked again: the old annotation value does not unlock a second time, a new one does.
	recordAttempts(t, ns, "alice", settings, 3, false)
	createEnrollment(t, ns, "canary", "webapp", "canary") // a later event, to know the manager has caught up
	waitCondition(t, ns, "canary", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	if e := getEnrollment(t, ns, "alice"); !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked) {
		t.Fatalf("a handled unlock value unlocked again")
	}
	annotate(t, ns, "alice", v1alpha1.AnnotationUnlock, "ticket-2")
	waitCondition(t, ns, "alice", v1alpha1.ConditionLocked, metav1.ConditionFalse, "")

	var events eventsv1.EventList
	testenv.EventuallyErr(t, "Unlocked events", func() (bool, error) {
		err := env.Client.List(ctx, &events, client.InNamespace(ns))
		n := 0
		for _, ev := range events.Items {
			if ev.Reason == "Unlocked" {
				n++
			}
		}
		return n == 2, err
	})
}

func TestDeletingAnEnrollmentGarbageCollectsItsSecret(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	e := createEnrollment(t, ns, "alice", "webapp", "alice")
	waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	getSecret(t, ns, "alice-otp")

	if err := env.Client.Delete(ctx, e); err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager's garbage collector follows the owner reference, as in a real cluster.
	testenv.EventuallyErr(t, "the secret to be garbage-collected", func() (bool, error) {
		return isNotFound(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice-otp"}, &corev1.Secret{}))
	})
}

// A confirmed user whose Secret disappears is not quietly given a new key and made pending (under Optional
// a pending user is not asked for a code at all): the enrollment fails closed until an administrator acts.
func TestAConfirmedEnrollmentThatLosesItsKeyStaysClosedUntilReissued(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	createEnrollment(t, ns, "alice", "webapp", "alice")
	waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	recordAttempts(t, ns, "alice", enrollment.Settings{MaxFailures: 3}, 1, true)
	waitCondition(t, ns, "alice", v1alpha1.ConditionEnrolled, metav1.ConditionTrue, v1alpha1.ReasonConfirmed)
	old := getSecret(t, ns, "alice-otp")

	if err := env.Client.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	e := waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonKeyLost)
	if e.Status.ConfirmedAt == nil || e.Status.SecretUID != string(old.UID) ||
		!meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionEnrolled) {
		t.Errorf("a lost key lowered the bar: %+v", e.Status)
	}
	waitEvent(t, ns, "alice", corev1.EventTypeWarning, v1alpha1.EventReasonKeyLost)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(old), &corev1.Secret{}); err == nil {
		t.Fatal("a new key was issued behind the user's back")
	}

	// The administrator's deliberate act: a new key, and the user enrolls again.
	annotate(t, ns, "alice", v1alpha1.AnnotationReissue, "ticket-9")
	e = waitCondition(t, ns, "alice", v1alpha1.ConditionEnrolled, metav1.ConditionFalse, v1alpha1.ReasonPendingConfirmation)
	fresh := getSecret(t, ns, "alice-otp")
	if fresh.UID == old.UID || bytes.Equal(fresh.Data[render.SecretKeySecret], old.Data[render.SecretKeySecret]) {
		t.Fatal("the reissue did not issue a new key")
	}
	if e.Status.SecretUID != string(fresh.UID) || e.Status.ConfirmedAt != nil || e.Status.LastHandledReissue != "ticket-9" {
		t.Errorf("status after the reissue: %+v", e.Status)
	}
	waitEvent(t, ns, "alice", corev1.EventTypeWarning, v1alpha1.EventReasonKeyReplaced)
}

// A pending enrollment that loses its Secret gets a new key: nobody was ever asked for the old one.
func TestAPendingEnrollmentThatLosesItsKeyGetsANewOne(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	createEnrollment(t, ns, "bob", "webapp", "bob")
	waitCondition(t, ns, "bob", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	old := getSecret(t, ns, "bob-otp")
	if err := env.Client.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyErr(t, "a new key for the pending enrollment", func() (bool, error) {
		e := getEnrollment(t, ns, "bob")
		return e.Status.SecretUID != "" && e.Status.SecretUID != string(old.UID) &&
			meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady), nil
	})
	waitEvent(t, ns, "bob", corev1.EventTypeWarning, v1alpha1.EventReasonKeyReplaced)
}

// waitEvent waits for a Warning Event with reason about enrollment name.
// waitEvent waits for an Event of type kind (Normal, Warning) and reason about enrollment name.
func waitEvent(t *testing.T, ns, name, kind, reason string) {
	t.Helper()
	testenv.EventuallyErr(t, "a "+kind+" "+reason+" Event", func() (bool, error) {
		var events eventsv1.EventList
		err := env.Client.List(ctx, &events, client.InNamespace(ns))
		return slices.ContainsFunc(events.Items, func(ev eventsv1.Event) bool {
			return ev.Reason == reason && ev.Type == kind && ev.Regarding.Name == name
		}), err
	})
}

func TestEnrollmentReadinessFollowsThePolicy(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)

	createEnrollment(t, ns, "early", "webapp", "early")
	waitCondition(t, ns, "early", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPolicyNotFound)

	createPolicy(t, ns, "webapp", enforcedTOTP())
	waitCondition(t, ns, "early", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)

	hotp := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hotp-user"},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "h", Method: v1alpha1.MethodHOTP}}
	if err := env.Client.Create(ctx, hotp); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "hotp-user", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonMethodNotAllowed)

	// Disabled: the existing key is kept, a new enrollment gets none until the policy allows it again. The
	// enrollment comes once the manager has seen the edit: before, its cache may still say Enforced.
	disabled := testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) { s.Mode = v1alpha1.ModeDisabled })
	waitPolicyObserved(t, disabled)
	createEnrollment(t, ns, "late", "webapp", "late")
	waitCondition(t, ns, "late", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPolicyDisabled)
	waitCondition(t, ns, "early", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
	getSecret(t, ns, "early-otp")
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "late-otp"}, &corev1.Secret{}); err == nil {
		t.Fatal("a Disabled policy provisioned a key")
	}

	testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.Mode = v1alpha1.ModeOptional
		s.Methods = []v1alpha1.Method{v1alpha1.MethodTOTP, v1alpha1.MethodHOTP}
	})
	waitCondition(t, ns, "late", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
	waitCondition(t, ns, "hotp-user", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
	if params, _, err := render.ParseOTPSecret(getSecret(t, ns, "hotp-user-otp")); err != nil || params.Method != v1alpha1.MethodHOTP {
		t.Errorf("HOTP enrollment got %+v (%v)", params, err)
	}

	// HOTP becomes the default method: early's key is still TOTP, and its status says so (it used to show
	// HOTP, Ready). An unlock makes the manager take one more pass over early once it has seen the edit.
	hotpFirst := testenv.EditPolicy(t, env.Client, client.ObjectKey{Namespace: ns, Name: "webapp"}, func(s *v1alpha1.TwoFactorPolicySpec) {
		s.Methods = []v1alpha1.Method{v1alpha1.MethodHOTP, v1alpha1.MethodTOTP}
	})
	waitPolicyObserved(t, hotpFirst)
	annotate(t, ns, "early", v1alpha1.AnnotationUnlock, "after-the-edit")
	testenv.Eventually(t, "the manager to handle the unlock", func() bool {
		return getEnrollment(t, ns, "early").Status.LastHandledUnlock == "after-the-edit"
	})
	if e := getEnrollment(t, ns, "early"); e.Status.Method != v1alpha1.MethodTOTP ||
		!meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady) {
		t.Errorf("early's TOTP key shows method %s, conditions %v", e.Status.Method, e.Status.Conditions)
	}
}

func TestASecondEnrollmentOfTheSameUserWaitsForTheFirst(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	first := createEnrollment(t, ns, "alice", "webapp", "alice")
	waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	createEnrollment(t, ns, "alice-again", "webapp", "alice")
	waitCondition(t, ns, "alice-again", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDuplicateUser)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice-again-otp"}, &corev1.Secret{}); err == nil {
		t.Fatal("a duplicate enrollment got a key")
	}

	if err := env.Client.Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "alice-again", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
}

// Creation times have whole seconds: an enrollment of alice created in the same second as hers, after she
// got her key, with a smaller name, used to get a key too (the first one was never looked at again), and
// the verifier switched to it. A key once bound is hers; the newcomer is the duplicate and gets none. A
// pair across a second boundary says nothing, so the test tries again.
func TestAnEnrollmentOfTheSameSecondNeverTakesAKeyAway(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	for i := range 10 {
		first := createEnrollment(t, ns, fmt.Sprintf("zz-%d", i), "webapp", fmt.Sprintf("user-%d", i))
		waitCondition(t, ns, first.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
		second := createEnrollment(t, ns, fmt.Sprintf("aa-%d", i), "webapp", fmt.Sprintf("user-%d", i))
		if !second.CreationTimestamp.Equal(&first.CreationTimestamp) {
			continue
		}
		waitCondition(t, ns, second.Name, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonDuplicateUser)
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.SecretName(second.Name)}, &corev1.Secret{}); err == nil {
			t.Fatal("the same-second duplicate got a key")
		}
		if e := getEnrollment(t, ns, first.Name); !meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady) {
			t.Fatalf("the first enrollment lost its place: %v", e.Status.Conditions)
		}
		return
	}
	t.Skip("no pair was created within one second")
}

func TestAForeignSecretIsNeverTouched(t *testing.T) {
	ns := env.Namespace(t)
	startManager(t)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice-otp"},
		StringData: map[string]string{"password": "hunter2"}}
	if err := env.Client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	createPolicy(t, ns, "webapp", enforcedTOTP())
	createEnrollment(t, ns, "alice", "webapp", "alice")
	waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSecretConflict)
	if s := getSecret(t, ns, "alice-otp"); string(s.Data["password"]) != "hunter2" || len(s.OwnerReferences) != 0 {
		t.Errorf("the foreign secret was changed: %v", s)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Someone who may create Secrets plants one under an enrollment's Secret name before the manager provisions
// it, with kube2fa's labels and a controller reference forged to the enrollment: they know its key. The
// manager never adopts it (it carries no manager provenance), and never provisions over it.
func TestAPlantedSecretWithAForgedOwnerIsNeverAKey(t *testing.T) {
	ns := env.Namespace(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	e := createEnrollment(t, ns, "alice", "webapp", "alice") // no manager yet: the attacker is first
	planted, err := render.OTPSecret(e, render.ParamsFor((&v1alpha1.TwoFactorPolicy{}).Resolve(), v1alpha1.MethodTOTP),
		"webapp", []byte("the attacker knows this key"))
	if err != nil {
		t.Fatal(err)
	}
	planted.Annotations = map[string]string{v1alpha1.AnnotationProvenance: "Zm9yZ2Vk"}
	if err := env.Client.Create(ctx, planted); err != nil {
		t.Fatal(err)
	}

	startManager(t)
	got := waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSecretConflict)
	if got.Status.SecretUID != "" {
		t.Fatalf("the planted Secret was bound as alice's key: %+v", got.Status)
	}
	waitEvent(t, ns, "alice", corev1.EventTypeWarning, v1alpha1.ReasonSecretConflict)
	if s := getSecret(t, ns, "alice-otp"); s.UID != planted.UID {
		t.Errorf("the planted Secret was replaced: the manager may not delete or rewrite a Secret")
	}
}

// The manager recognises a Secret it created itself before it could record it (a crash, a lost status
// write): its provenance holds, so the key is kept, not replaced.
func TestASecretTheManagerCreatedButNeverRecordedIsAdopted(t *testing.T) {
	ns := env.Namespace(t)
	stop := startManager(t)
	createPolicy(t, ns, "webapp", enforcedTOTP())
	createEnrollment(t, ns, "alice", "webapp", "alice")
	e := waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
	stop()
	mine := getSecret(t, ns, "alice-otp")
	e.Status = v1alpha1.UserEnrollmentStatus{} // as if the status write after the create was lost
	if err := env.Client.Status().Update(ctx, e); err != nil {
		t.Fatal(err)
	}

	startManager(t)
	e = waitCondition(t, ns, "alice", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned)
	if e.Status.SecretUID != string(mine.UID) {
		t.Errorf("the manager's own unrecorded Secret was not adopted: status bound to %q, Secret %q", e.Status.SecretUID, mine.UID)
	}
}
