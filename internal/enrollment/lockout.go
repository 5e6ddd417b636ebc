package enrollment

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Settings are a policy's lockout parameters.
type Settings struct {
	// MaxFailures consecutive wrong codes lock the enrollment.
	MaxFailures int32
	// Throttle is how long a lock lasts; 0 means until an administrator unlocks.
	Throttle time.Duration
	// MaxTemporaryLockouts is how many throttled locks an enrollment gets without a success in between;
	// the next lock lasts until an administrator unlocks. 0 means no bound.
	MaxTemporaryLockouts int32
}

// SettingsFor returns the lockout settings of a resolved policy.
func SettingsFor(p v1alpha1.ResolvedPolicy) Settings {
	return Settings{
		MaxFailures:          p.Lockout.MaxFailures,
		Throttle:             time.Duration(p.Lockout.ThrottleSeconds) * time.Second,
		MaxTemporaryLockouts: p.Lockout.MaxTemporaryLockouts,
	}
}

// Outcome is what an attempt did.
type Outcome int

const (
	// Accepted: the code was right; failures were reset.
	Accepted Outcome = iota
	// Rejected: the code was wrong and counted as a failure (which may have locked the enrollment).
	Rejected
	// RefusedLocked: the enrollment is locked; the code was not evaluated and nothing was counted.
	RefusedLocked
	// RefusedUsed: the code was one already used (a double submit, a retry); refused, nothing counted.
	RefusedUsed
)

// Verdict is what a check found a code to be.
type Verdict int

const (
	// Wrong: a guess that failed; it counts.
	Wrong Verdict = iota
	// Right: the code is accepted.
	Right
	// Used: the code is one accepted before (or passed over by a later one), replayed; no guess, so it
	// does not count, whichever replica sees it.
	Used
)

// Result describes one attempt.
type Result struct {
	Outcome Outcome
	// LockedNow is true when this attempt's failure locked the enrollment.
	LockedNow bool
	// RemainingAttempts is how many wrong codes are left before the lock (after a rejection).
	RemainingAttempts int32
	// RetryAfter is how long until the lock ends; 0 when only an administrator can unlock.
	RetryAfter time.Duration
}

// Attempt applies one code attempt at now. An expired lock is cleared first; while locked, check is not
// called, nothing is counted and the lock is not extended. Otherwise check decides whether the code is right
// (and may record its own facts, such as the TOTP step, when it is), wrong (counted), or used (refused, not
// counted).
func Attempt(st *v1alpha1.VerificationState, s Settings, now time.Time, check func() Verdict) Result {
	Expire(st, now)
	if IsLocked(st, now) {
		return Result{Outcome: RefusedLocked, RetryAfter: RetryAfter(st, now)}
	}
	switch check() {
	case Right:
		st.FailedAttempts, st.TemporaryLockouts = 0, 0
		st.LastSuccessAt = stamp(now)
		return Result{Outcome: Accepted}
	case Used:
		return Result{Outcome: RefusedUsed}
	}
	st.FailedAttempts++
	st.LastFailureAt = stamp(now)
	res := Result{Outcome: Rejected, RemainingAttempts: max(s.MaxFailures-st.FailedAttempts, 0)}
	if st.FailedAttempts >= s.MaxFailures {
		st.LockedAt = stamp(now)
		st.LockedUntil = nil
		// A throttle does not stack on failures (the reference semantics), but it does not come back for
		// ever either: past MaxTemporaryLockouts, an administrator decides.
		if s.Throttle > 0 && (s.MaxTemporaryLockouts == 0 || st.TemporaryLockouts < s.MaxTemporaryLockouts) {
			st.LockedUntil = stamp(st.LockedAt.Add(s.Throttle))
			st.TemporaryLockouts++
		}
		res.LockedNow = true
		res.RetryAfter = RetryAfter(st, now)
	}
	return res
}

// IsLocked reports whether st is locked at now. A lock whose throttle has ended is not locked.
func IsLocked(st *v1alpha1.VerificationState, now time.Time) bool {
	return st.LockedAt != nil && (st.LockedUntil == nil || now.Before(st.LockedUntil.Time))
}

// RetryAfter is how long until the lock ends, rounded up to whole seconds; 0 when not locked or when only an
// administrator can unlock.
func RetryAfter(st *v1alpha1.VerificationState, now time.Time) time.Duration {
	if !IsLocked(st, now) || st.LockedUntil == nil {
		return 0
	}
	d := st.LockedUntil.Sub(now)
	return (d + time.Second - 1).Truncate(time.Second)
}

// Expire clears a lock whose throttle has ended, with its failures, and reports whether it did.
func Expire(st *v1alpha1.VerificationState, now time.Time) bool {
	if st.LockedAt == nil || IsLocked(st, now) {
		return false
	}
	clear(st)
	return true
}

// Unlock handles the administrator's unlock annotation on an enrollment with status st and verification
// state state: a value not handled before clears the lock, the failures and the count of temporary lockouts,
// and is recorded in st. It reports whether the value was new.
func Unlock(st *v1alpha1.UserEnrollmentStatus, state *v1alpha1.VerificationState, annotation string) bool {
	if annotation == "" || annotation == st.LastHandledUnlock {
		return false
	}
	clear(state)
	state.TemporaryLockouts = 0
	st.LastHandledUnlock = annotation
	return true
}

// Reset returns st to a pending enrollment for a new key: the confirmation, and the recovery codes, belong to
// the key they were made with. The verification state needs no reset: it names its key (see StateOf).
func Reset(st *v1alpha1.UserEnrollmentStatus) {
	st.ConfirmedAt = nil
	st.RecoveryCodesRemaining = nil
}

// StateOf returns the verification state recorded for the key with Secret UID key: recorded state when it
// is that key's, a fresh state otherwise (nothing recorded yet, or recorded for a key since replaced).
func StateOf(recorded *v1alpha1.VerificationState, key string) v1alpha1.VerificationState {
	if recorded == nil || recorded.Key != key {
		return v1alpha1.VerificationState{Key: key}
	}
	return *recorded.DeepCopy()
}

// clear ends a lock and resets the failure count; lastFailureAt stays as history.
func clear(st *v1alpha1.VerificationState) {
	st.FailedAttempts = 0
	st.LockedAt = nil
	st.LockedUntil = nil
}

// stamp returns now at the precision the API server stores (seconds), so that what is decided in memory is
// exactly what every replica reads back.
func stamp(now time.Time) *metav1.Time {
	t := metav1.NewTime(now.Truncate(time.Second))
	return &t
}
