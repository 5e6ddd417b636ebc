package enrollment

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

func wrong() Verdict { return Wrong }
func right() Verdict { return Right }

func TestLocksAtExactlyMaxFailures(t *testing.T) {
	for _, max := range []int32{1, 3, 5} {
		st := &v1alpha1.VerificationState{}
		s := Settings{MaxFailures: max, Throttle: time.Minute}
		for i := int32(1); i < max; i++ {
			res := Attempt(st, s, t0, wrong)
			if res.Outcome != Rejected || res.LockedNow || res.RemainingAttempts != max-i {
				t.Fatalf("max %d, failure %d: got %+v", max, i, res)
			}
			if IsLocked(st, t0) {
				t.Fatalf("max %d: locked after only %d failures", max, i)
			}
		}
		res := Attempt(st, s, t0, wrong)
		if !res.LockedNow || res.RemainingAttempts != 0 || !IsLocked(st, t0) || st.FailedAttempts != max {
			t.Fatalf("max %d: failure %d did not lock: %+v, status %+v", max, max, res, st)
		}
		if res.RetryAfter != time.Minute {
			t.Errorf("max %d: RetryAfter = %v, want 1m", max, res.RetryAfter)
		}
	}
}

func TestRightCodeWhileLockedIsRefusedAndNotCounted(t *testing.T) {
	st := &v1alpha1.VerificationState{}
	s := Settings{MaxFailures: 2, Throttle: time.Minute}
	Attempt(st, s, t0, wrong)
	Attempt(st, s, t0, wrong)
	lockedUntil := st.LockedUntil.DeepCopy()
	called := false
	res := Attempt(st, s, t0.Add(30*time.Second), func() Verdict { called = true; return Right })
	if res.Outcome != RefusedLocked || called {
		t.Fatalf("a code was evaluated while locked: %+v (check called: %v)", res, called)
	}
	if st.FailedAttempts != 2 || !st.LockedUntil.Equal(lockedUntil) {
		t.Fatalf("a refused attempt changed the lock: failures %d, until %v", st.FailedAttempts, st.LockedUntil)
	}
	if res.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter = %v, want 30s", res.RetryAfter)
	}
}

func TestThrottleZeroStaysLockedUntilUnlock(t *testing.T) {
	st := &v1alpha1.VerificationState{}
	s := Settings{MaxFailures: 1}
	if res := Attempt(st, s, t0, wrong); !res.LockedNow || res.RetryAfter != 0 {
		t.Fatalf("got %+v, want a lock without retry time", res)
	}
	if st.LockedUntil != nil {
		t.Fatalf("lockedUntil = %v, want none (admin must unlock)", st.LockedUntil)
	}
	years := t0.Add(24 * 365 * 10 * time.Hour)
	if Expire(st, years) || !IsLocked(st, years) {
		t.Fatal("a lock without throttle ended by itself")
	}
	status := &v1alpha1.UserEnrollmentStatus{}
	if !Unlock(status, st, "ticket-42") || IsLocked(st, years) || st.FailedAttempts != 0 || status.LastHandledUnlock != "ticket-42" {
		t.Fatalf("unlock did not clear the lock: %+v", st)
	}
	if Unlock(status, st, "ticket-42") {
		t.Fatal("the same unlock value was handled twice")
	}
	if Unlock(status, st, "") {
		t.Fatal("an empty unlock value was handled")
	}
}

func TestThrottleExpiryUnlocksAndResetsFailures(t *testing.T) {
	st := &v1alpha1.VerificationState{}
	s := Settings{MaxFailures: 3, Throttle: 10 * time.Second}
	for range 3 {
		Attempt(st, s, t0, wrong)
	}
	if Expire(st, t0.Add(9*time.Second)) {
		t.Fatal("expired a second early")
	}
	if !Expire(st, t0.Add(10*time.Second)) {
		t.Fatal("did not expire at lockedUntil")
	}
	if st.LockedAt != nil || st.LockedUntil != nil || st.FailedAttempts != 0 {
		t.Fatalf("expiry left state behind: %+v", st)
	}
	// Attempt expires by itself: a right code just after the throttle is accepted.
	for range 3 {
		Attempt(st, s, t0, wrong)
	}
	if res := Attempt(st, s, t0.Add(10*time.Second), right); res.Outcome != Accepted {
		t.Fatalf("right code after expiry: %+v", res)
	}
}

func TestSuccessResetsFailures(t *testing.T) {
	st := &v1alpha1.VerificationState{}
	s := Settings{MaxFailures: 3}
	Attempt(st, s, t0, wrong)
	Attempt(st, s, t0, wrong)
	if res := Attempt(st, s, t0, right); res.Outcome != Accepted || st.FailedAttempts != 0 || st.LastSuccessAt == nil {
		t.Fatalf("success did not reset: %+v %+v", res, st)
	}
	Attempt(st, s, t0, wrong)
	if IsLocked(st, t0) {
		t.Fatal("locked after 1 failure following a success")
	}
}

func TestTimesAreStoredAtAPIServerPrecision(t *testing.T) {
	st := &v1alpha1.VerificationState{}
	now := t0.Add(1500 * time.Millisecond)
	Attempt(st, Settings{MaxFailures: 1, Throttle: 5 * time.Second}, now, wrong)
	if st.LockedAt.Nanosecond() != 0 || st.LockedUntil.Nanosecond() != 0 {
		t.Fatalf("sub-second times would change on a round trip: %v %v", st.LockedAt, st.LockedUntil)
	}
}

func TestResetForgetsTheConfirmationButNotTheHandledUnlock(t *testing.T) {
	now := metav1.NewTime(t0)
	st := &v1alpha1.UserEnrollmentStatus{ConfirmedAt: &now, LastHandledUnlock: "x"}
	Reset(st)
	if st.ConfirmedAt != nil {
		t.Fatalf("reset kept the confirmation of the old key: %+v", st)
	}
	if st.LastHandledUnlock != "x" {
		t.Error("reset forgot the handled unlock value: the same annotation would be handled again")
	}
}

// State recorded for one key counts for nothing for another: a replaced key, or another enrollment of the
// same user, starts afresh, whatever the old state held.
func TestStateOfAnotherKeyReadsAsFresh(t *testing.T) {
	step, counter := int64(7), int64(9)
	now := metav1.NewTime(t0)
	old := &v1alpha1.VerificationState{Key: "s1", LastSuccessAt: &now, LastUsedStep: &step, HOTPCounter: &counter,
		FailedAttempts: 2, LockedAt: &now, LastFailureAt: &now, TemporaryLockouts: 3}
	if got := StateOf(old, "s2"); !equality.Semantic.DeepEqual(got, v1alpha1.VerificationState{Key: "s2"}) {
		t.Fatalf("state of key s1 read for key s2: %+v", got)
	}
	got := StateOf(old, "s1")
	if !equality.Semantic.DeepEqual(&got, old) {
		t.Fatalf("state of key s1 read for s1: %+v", got)
	}
	got.FailedAttempts = 0
	if old.FailedAttempts != 2 {
		t.Fatal("StateOf shares the recorded state: a decision would change what was read")
	}
	if got := StateOf(nil, "s1"); got.Key != "s1" || got.FailedAttempts != 0 {
		t.Fatalf("no state: %+v", got)
	}
}

func TestConditionsFollowTheFacts(t *testing.T) {
	now := metav1.NewTime(t0)
	until := metav1.NewTime(t0.Add(time.Minute))
	tests := []struct {
		name             string
		st               v1alpha1.UserEnrollmentStatus
		state            *v1alpha1.VerificationState
		at               time.Time
		enrolled, locked metav1.ConditionStatus
		enrolledReason   string
	}{
		{"no key yet", v1alpha1.UserEnrollmentStatus{}, nil, t0,
			metav1.ConditionFalse, metav1.ConditionFalse, v1alpha1.ReasonNoKey},
		{"pending", v1alpha1.UserEnrollmentStatus{SecretUID: "u"}, nil, t0,
			metav1.ConditionFalse, metav1.ConditionFalse, v1alpha1.ReasonPendingConfirmation},
		{"confirmed", v1alpha1.UserEnrollmentStatus{SecretUID: "u", ConfirmedAt: &now}, &v1alpha1.VerificationState{Key: "u"}, t0,
			metav1.ConditionTrue, metav1.ConditionFalse, v1alpha1.ReasonConfirmed},
		{"locked by admin", v1alpha1.UserEnrollmentStatus{SecretUID: "u", ConfirmedAt: &now},
			&v1alpha1.VerificationState{Key: "u", LockedAt: &now}, t0,
			metav1.ConditionTrue, metav1.ConditionTrue, v1alpha1.ReasonConfirmed},
		{"locked with throttle", v1alpha1.UserEnrollmentStatus{SecretUID: "u"},
			&v1alpha1.VerificationState{Key: "u", LockedAt: &now, LockedUntil: &until}, t0,
			metav1.ConditionFalse, metav1.ConditionTrue, v1alpha1.ReasonPendingConfirmation},
		{"throttle over", v1alpha1.UserEnrollmentStatus{SecretUID: "u"},
			&v1alpha1.VerificationState{Key: "u", LockedAt: &now, LockedUntil: &until}, until.Time,
			metav1.ConditionFalse, metav1.ConditionFalse, v1alpha1.ReasonPendingConfirmation},
		{"lock of a replaced key", v1alpha1.UserEnrollmentStatus{SecretUID: "u2"},
			&v1alpha1.VerificationState{Key: "u", LockedAt: &now}, t0,
			metav1.ConditionFalse, metav1.ConditionFalse, v1alpha1.ReasonPendingConfirmation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			SetEnrolled(&tt.st, 4)
			SetLocked(&tt.st, tt.state, 4, tt.at)
			e := meta.FindStatusCondition(tt.st.Conditions, v1alpha1.ConditionEnrolled)
			l := meta.FindStatusCondition(tt.st.Conditions, v1alpha1.ConditionLocked)
			if e.Status != tt.enrolled || e.Reason != tt.enrolledReason || l.Status != tt.locked {
				t.Fatalf("Enrolled %s/%s, Locked %s; want %s/%s, %s", e.Status, e.Reason, l.Status,
					tt.enrolled, tt.enrolledReason, tt.locked)
			}
			if e.ObservedGeneration != 4 || l.ObservedGeneration != 4 {
				t.Error("conditions do not carry the observed generation")
			}
		})
	}
}

func TestCountUsesTheConditionsClientsSee(t *testing.T) {
	mk := func(ready, enrolled, locked metav1.ConditionStatus) v1alpha1.UserEnrollment {
		return v1alpha1.UserEnrollment{Status: v1alpha1.UserEnrollmentStatus{Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: ready},
			{Type: v1alpha1.ConditionEnrolled, Status: enrolled},
			{Type: v1alpha1.ConditionLocked, Status: locked},
		}}}
	}
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	self := func(e v1alpha1.UserEnrollment) v1alpha1.UserEnrollment {
		e.Labels = map[string]string{v1alpha1.LabelSelfEnrolled: "true"}
		return e
	}
	confirmed := self(mk(T, T, F))
	confirmed.Status.ConfirmedAt = &metav1.Time{Time: t0}
	deleting := self(mk(F, F, F))
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	got := Count([]v1alpha1.UserEnrollment{mk(T, T, F), mk(T, T, T), mk(T, F, F), mk(F, F, F), {},
		self(mk(T, F, F)), self(mk(F, F, F)), confirmed, deleting})
	// The self-enrolled pending are the unconfirmed ones not being deleted, keyed or not: what --max-pending bounds.
	want := v1alpha1.EnrollmentCounts{Total: 9, Confirmed: 3, Pending: 2, Locked: 1, SelfEnrolledPending: 2}
	if got != want {
		t.Fatalf("Count = %+v, want %+v", got, want)
	}
}

// A replayed code is refused without counting: a double submit never locks the user out, even at one failure
// from the lock; while locked, the lock answers first.
func TestAUsedCodeIsRefusedNotCounted(t *testing.T) {
	st := &v1alpha1.VerificationState{}
	s := Settings{MaxFailures: 2}
	used := func() Verdict { return Used }
	Attempt(st, s, t0, wrong)
	before := *st.DeepCopy()
	for range 5 {
		if res := Attempt(st, s, t0.Add(time.Second), used); res.Outcome != RefusedUsed || res.LockedNow {
			t.Fatalf("replay: %+v", res)
		}
	}
	if st.FailedAttempts != 1 || IsLocked(st, t0) || !st.LastFailureAt.Equal(before.LastFailureAt) {
		t.Fatalf("replays changed the state: %+v", st)
	}
	Attempt(st, s, t0, wrong)
	if res := Attempt(st, s, t0, used); res.Outcome != RefusedLocked {
		t.Fatalf("replay while locked: %+v", res)
	}
}

// With a throttle, each lock used to end by itself for ever: maxFailures fresh guesses every throttle
// period. After MaxTemporaryLockouts throttled locks without a success, the next lock needs an
// administrator; a success or an unlock starts the count again. The clock is the test's.
func TestTemporaryLockoutsAreBounded(t *testing.T) {
	s := Settings{MaxFailures: 2, Throttle: time.Minute, MaxTemporaryLockouts: 3}
	st := &v1alpha1.VerificationState{}
	now := t0
	lock := func() Result {
		t.Helper()
		Attempt(st, s, now, wrong)
		return Attempt(st, s, now, wrong)
	}
	for i := int32(1); i <= 3; i++ {
		if res := lock(); !res.LockedNow || res.RetryAfter != time.Minute || st.TemporaryLockouts != i {
			t.Fatalf("lock %d: %+v, %d temporary lockouts", i, res, st.TemporaryLockouts)
		}
		now = now.Add(time.Minute) // the throttle ends by itself
	}
	if res := lock(); !res.LockedNow || res.RetryAfter != 0 || st.LockedUntil != nil {
		t.Fatalf("the fourth lock ends by itself: %+v", res)
	}
	if IsLocked(st, now.Add(365*24*time.Hour)) != true {
		t.Fatal("the fourth lock ended without an administrator")
	}
	status := &v1alpha1.UserEnrollmentStatus{}
	SetLocked(status, st, 1, now)
	if c := meta.FindStatusCondition(status.Conditions, v1alpha1.ConditionLocked); c == nil ||
		c.Message != "Locked after 2 wrong codes until an administrator unlocks it (after 3 temporary lockouts without a success)" {
		t.Fatalf("Locked condition: %+v", c)
	}
	if !Unlock(status, st, "ticket-1") || st.TemporaryLockouts != 0 {
		t.Fatalf("an unlock keeps the count: %+v", st)
	}
	lock()
	now = now.Add(time.Minute)
	if res := Attempt(st, s, now, right); res.Outcome != Accepted || st.TemporaryLockouts != 0 {
		t.Fatalf("a success keeps the count: %+v", st)
	}
	unbounded := Settings{MaxFailures: 1, Throttle: time.Second}
	for range 50 {
		if res := Attempt(st, unbounded, now, wrong); res.RetryAfter != time.Second {
			t.Fatalf("0 bounds nothing: %+v", res)
		}
		now = now.Add(time.Second)
	}
}

// Project's answer is what the verifier writes the view on: it must say changed exactly when the status
// differs afterwards, or a lock would not show (a false "unchanged") or every decision would cost a second
// write (a false "changed").
func TestProjectReportsExactlyTheChanges(t *testing.T) {
	now := metav1.NewTime(t0)
	until := metav1.NewTime(t0.Add(time.Minute))
	fresh := &v1alpha1.VerificationState{Key: "u"}
	locked := &v1alpha1.VerificationState{Key: "u", FailedAttempts: 3, LockedAt: &now, LockedUntil: &until}
	withCodes := &v1alpha1.VerificationState{Key: "u", RecoveryGeneration: 1, RecoveryCodes: 10}
	oneUsed := &v1alpha1.VerificationState{Key: "u", RecoveryGeneration: 1, RecoveryCodes: 10, RecoveryCodesUsed: []int32{4}}
	status := v1alpha1.UserEnrollmentStatus{SecretUID: "u"}
	steps := []struct {
		name    string
		state   *v1alpha1.VerificationState
		confirm bool
		at      time.Time
		changed bool
	}{
		{"first view", fresh, false, t0, true},
		{"the same view again", fresh, false, t0.Add(time.Second), false},
		{"locked", locked, false, t0, true},
		{"still locked, later", locked, false, t0.Add(30 * time.Second), false},
		{"the lock's end", locked, false, until.Time, true},
		{"confirmed", fresh, true, t0, true},
		{"confirmed again", fresh, true, t0.Add(time.Second), false},
		{"recovery codes issued", withCodes, false, t0, true},
		{"the same codes", withCodes, false, t0, false},
		{"a recovery code used", oneUsed, false, t0, true},
		{"state of a replaced key", &v1alpha1.VerificationState{Key: "old"}, false, t0, true},
		{"no state at all", nil, false, t0, false},
	}
	for _, s := range steps {
		before := *status.DeepCopy()
		changed := Project(&status, s.state, s.confirm, 2, s.at)
		if differs := !equality.Semantic.DeepEqual(before, status); changed != differs || changed != s.changed {
			t.Fatalf("%s: Project says changed=%v, the status differs: %v; want %v", s.name, changed, differs, s.changed)
		}
	}
	if status.ConfirmedAt == nil || !status.ConfirmedAt.Equal(&now) {
		t.Errorf("confirmation recorded at %v, want %v (the first one)", status.ConfirmedAt, now)
	}
}
