// Package verifier checks one-time codes for the users of one TwoFactorPolicy and records every decision
// in the API server. It keeps no state of its own: it reads the policy's verifier ConfigMap, the
// enrollments and their Secrets from watch caches, and each user's verification state from the user's state
// Lease; it decides with the shared state machine in internal/enrollment, and records the decision with one
// update of that Lease guarded by the resourceVersion it decided on. Any number of replicas therefore agree:
// a code is accepted at most once, and at most maxFailures wrong codes are evaluated before the lock.
package verifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
)

// Result is the answer to a code or an enrollment request.
type Result string

const (
	Accepted           Result = "accepted"
	NotRequired        Result = "not_required"
	Rejected           Result = "rejected"
	EnrollmentRequired Result = "enrollment_required"
	// ReenrollmentRequired: the user's confirmed key is lost; only an administrator can let them enroll
	// again. Every code is refused meanwhile, whatever the mode (but Disabled).
	ReenrollmentRequired Result = "reenrollment_required"
	Locked               Result = "locked"
	Confirmed            Result = "confirmed"
	// AlreadyUsed: the code was accepted before (a double submit, a retry, another tab); refused and not
	// counted as a failure. The user waits for the next code.
	AlreadyUsed Result = "already_used"
	// Resynchronized: two consecutive HOTP codes moved the counter past them.
	Resynchronized Result = "resynchronized"
	// Regenerated: a valid code bought a new set of recovery codes; every earlier one is worthless.
	Regenerated Result = "regenerated"
)

// Decision is the outcome of a code check.
type Decision struct {
	Result Result
	// RemainingAttempts after a rejection.
	RemainingAttempts int32
	// RetryAfter while locked; 0 when only an administrator can unlock.
	RetryAfter time.Duration
	// LockedNow is true when this decision locked the enrollment.
	LockedNow bool
	// RecoveryCodes are the user's new recovery codes, on the confirmation that issues them and on a
	// regeneration: the only answers that ever hold them.
	RecoveryCodes []string
	// RecoveryCodesRemaining after a recovery code was accepted.
	RecoveryCodesRemaining *int32
}

// Verifier answers for one policy in one namespace.
type Verifier struct {
	Namespace string
	Policy    string
	// Cache is the watch cache holding the policy and its ConfigMap.
	Cache client.Reader
	// Client reads enrollments and keys from the API server (consistent reads), and writes.
	Client client.Client
	Clock  clock.PassiveClock
	// Events announces confirmations and lockouts on enrollments, and an untrusted ConfigMap on the policy;
	// optional. eventType is corev1.EventTypeNormal or Warning.
	Events func(regarding client.Object, eventType, reason, message string)
	// MaxRetries bounds re-decisions after write conflicts (default 10).
	MaxRetries int
	// ProvisionTimeout bounds how long self-enrollment waits for the manager's Secret (default 10s).
	ProvisionTimeout time.Duration
	// SelfEnrollments bounds how fast this replica creates enrollments (nil: no bound). MaxPending bounds
	// the policy's unconfirmed self-enrollments (0: no bound). Each costs a Secret and an object in etcd,
	// whose quota the whole cluster shares, and an application with open sign-up lets anyone ask.
	SelfEnrollments *rate.Limiter
	MaxPending      int
	// MaxStaleness bounds how old the last confirmation that the cached policy is the API server's may be
	// (see CheckFreshness); past it every answer is unavailable. 0 turns the bound off (tests that build a
	// Verifier by hand).
	MaxStaleness time.Duration

	// ServerClock, when set, measures Clock against the API server's; while it is off by more than the TOTP
	// window absorbs, TOTP decisions are refused (ErrClock) and the replica is not ready. Replica names this
	// replica in the Warning Event that says so.
	ServerClock *ServerClock
	Replica     string

	// clockFaulty is whether the last TOTP decision found the clock at fault: the Event is once per fault.
	clockFaulty atomic.Bool
	// freshAt is when (unix nanoseconds, real time) a read from the API server last found the cached policy
	// ConfigMap current.
	freshAt atomic.Int64
	// distrusted is why the policy's ConfigMap was last refused, until one is trusted again.
	distrusted atomic.Pointer[string]

	// Leases reads and writes the state Leases of the policy's namespace.
	Leases LeaseClient

	// dir remembers the enrollments and keys read, until a watch says they changed (see directory).
	// states remembers the state Leases read and written: read on demand, bounded
	// (DefaultRememberedStates), the least recently used forgotten.
	dir        *directory
	dirOnce    sync.Once
	states     *lru.Cache
	statesOnce sync.Once
	// policy is the last parsed verifier ConfigMap.
	policy atomic.Pointer[parsedPolicy]
	// policyEvents, when set (Start sets it), counts the watch events of the policy and its ConfigMap: the
	// trusted policy is resolved again only after one, not read from the cache on every decision.
	policyEvents *atomic.Uint64
}

type parsedPolicy struct {
	// resourceVersion is the ConfigMap's, owner the UID of the policy that controls it.
	resourceVersion string
	owner           types.UID
	policy          v1alpha1.ResolvedPolicy
	// events is policyEvents's count when the policy was last found trusted.
	events uint64
}

type parsedKey struct {
	// owner is the enrollment that controls the Secret the key was read from.
	owner  types.UID
	params otp.Params
	key    []byte
}

// directory is the replica's directory; a Verifier built without Start has one that remembers nothing,
// for no watch tells it of changes.
func (v *Verifier) directory() *directory {
	v.dirOnce.Do(func() {
		if v.dir == nil {
			v.dir = newDirectory(1)
		}
	})
	return v.dir
}

// attempt is what a request asks of a user's enrollment.
type attempt int

const (
	verifying    attempt = iota // a code at login
	confirming                  // the first code of a pending enrollment
	resyncing                   // two consecutive HOTP codes, to move a drifted counter
	recovering                  // a recovery code at login, in place of a code
	regenerating                // a code, to replace the recovery codes
)

// judge decides what codes are for the enrollment state st, and records on st what makes them single-use.
type judge func(st *v1alpha1.VerificationState, params otp.Params, key []byte, now time.Time, p v1alpha1.ResolvedPolicy) enrollment.Verdict

// Verify checks a code for user: POST /v1/verify.
func (v *Verifier) Verify(ctx context.Context, user, code string) (Decision, error) {
	return v.decide(ctx, user, verifying, codeOf(code))
}

// Confirm checks the first code of a pending enrollment: POST /v1/enrollments/{user}/confirm.
func (v *Verifier) Confirm(ctx context.Context, user, code string) (Decision, error) {
	return v.decide(ctx, user, confirming, codeOf(code))
}

// Resync moves a confirmed HOTP enrollment's counter past two consecutive codes found within the policy's
// hotp.resyncWindow: POST /v1/enrollments/{user}/resync. A failure counts as one wrong code.
func (v *Verifier) Resync(ctx context.Context, user, code, next string) (Decision, error) {
	return v.decide(ctx, user, resyncing, func(st *v1alpha1.VerificationState, params otp.Params, key []byte,
		_ time.Time, p v1alpha1.ResolvedPolicy) enrollment.Verdict {
		counter, found := otp.ResyncHOTP(key, params, code, next, ptr.Deref(st.HOTPCounter, 0), p.HOTP.ResyncWindow)
		switch found {
		case otp.Fresh:
			st.HOTPCounter = &counter
			return enrollment.Right
		case otp.Replayed:
			return enrollment.Used
		}
		return enrollment.Wrong
	})
}

// VerifyRecoveryCode checks a recovery code in place of a code at login: POST /v1/verify with recoveryCode.
// A wrong one counts as a wrong code; a used one is refused, not counted.
func (v *Verifier) VerifyRecoveryCode(ctx context.Context, user, code string) (Decision, error) {
	return v.decide(ctx, user, recovering, func(st *v1alpha1.VerificationState, _ otp.Params, key []byte,
		_ time.Time, _ v1alpha1.ResolvedPolicy) enrollment.Verdict {
		if st.RecoveryGeneration == 0 {
			return enrollment.Wrong
		}
		i, found := otp.MatchRecoveryCode(key, st.RecoveryGeneration, int(st.RecoveryCodes), enrollment.UsedRecoveryCodes(st), code)
		switch found {
		case otp.Fresh:
			enrollment.UseRecoveryCode(st, i)
			return enrollment.Right
		case otp.Replayed:
			return enrollment.Used
		}
		return enrollment.Wrong
	})
}

// RegenerateRecoveryCodes replaces a confirmed user's recovery codes for a valid code (which it uses up, as
// a login does): POST /v1/enrollments/{user}/recovery-codes. Only someone holding the second factor gets
// new codes, and every earlier code is worthless from the same write.
func (v *Verifier) RegenerateRecoveryCodes(ctx context.Context, user, code string) (Decision, error) {
	return v.decide(ctx, user, regenerating, codeOf(code))
}

func codeOf(code string) judge {
	return func(st *v1alpha1.VerificationState, params otp.Params, key []byte, now time.Time, p v1alpha1.ResolvedPolicy) enrollment.Verdict {
		return check(st, params, key, code, now, p)
	}
}

// decide reads, decides and records, retrying on a write conflict with the state the conflict revealed. A
// decision is one guarded write of the user's state Lease; a transition (a confirmation, a lock, the end of
// one) writes the enrollment's conditions too.
func (v *Verifier) decide(ctx context.Context, user string, kind attempt, judge judge) (Decision, error) {
	policy, err := v.resolvedPolicy(ctx)
	if err != nil {
		return Decision{}, err
	}
	src := memory // after a conflict, the state is read from etcd
	unconfirmedReread := false
	for range maxRetries(v.MaxRetries) {
		e, err := v.enrollment(ctx, user)
		if err != nil {
			return Decision{}, err
		}
		// Another replica may have confirmed the enrollment a moment ago, before this replica's watch shows it:
		// an answer for want of a confirmation (enroll first, no code needed, not confirmed yet) is given only
		// on the enrollment as the API server has it.
		if e != nil && e.Status.ConfirmedAt == nil && kind != confirming && policy.Mode != v1alpha1.ModeDisabled && !unconfirmedReread {
			unconfirmedReread = true
			if e, err = v.reread(ctx, e); err != nil {
				return Decision{}, err
			}
		}
		if d, done, err := v.precheck(policy, e, kind); done || err != nil {
			return d, err
		}
		params, key, err := v.key(ctx, e)
		if err != nil {
			return Decision{}, err
		}
		if kind == resyncing && params.Method != v1alpha1.MethodHOTP {
			return Decision{}, refuse(ErrMethodNotAllowed, "only HOTP enrollments resynchronise; this one is %s", params.Method)
		}
		if params.Method == v1alpha1.MethodTOTP && kind != recovering {
			if err := v.clockGuard(ctx, policy); err != nil {
				return Decision{}, err
			}
		}
		read, err := v.readState(ctx, e, src)
		if err != nil {
			return Decision{}, err
		}
		now := v.Clock.Now()
		st := read.state
		res := enrollment.Attempt(&st, enrollment.SettingsFor(policy), now, func() enrollment.Verdict {
			return judge(&st, params, key, now, policy)
		})
		if res.Outcome == enrollment.Accepted && (kind == regenerating || (kind == confirming && st.RecoveryGeneration == 0)) &&
			policy.RecoveryCodes > 0 {
			enrollment.IssueRecoveryCodes(&st, policy.RecoveryCodes) // in the very write that uses the code
		}
		if refused := res.Outcome == enrollment.RefusedLocked || res.Outcome == enrollment.RefusedUsed; refused && read.remembered {
			src = watchCache // a refusal writes nothing that would catch a stale memory (an unlock): read first
			continue
		}
		switch res.Outcome { // nothing changed, nothing written, but a condition that does not show it yet
		case enrollment.RefusedLocked:
			_ = v.project(ctx, e, st, false, now) // the view; the lock holds whatever becomes of it
			return Decision{Result: Locked, RetryAfter: res.RetryAfter}, nil
		case enrollment.RefusedUsed:
			return Decision{Result: AlreadyUsed}, nil
		}
		if err := v.writeState(ctx, e, read, st); err != nil {
			if errors.Is(err, errStateConflict) {
				src = quorum
				continue
			}
			return Decision{}, err
		}
		// A confirmation holds only once recorded (the code is used either way: the next one confirms); a
		// lock or its end holds in the state whatever becomes of its view, which the next decision repairs.
		confirmed := res.Outcome == enrollment.Accepted && kind == confirming
		if err := v.project(ctx, e, st, confirmed, now); err != nil && confirmed {
			return Decision{}, err
		}
		d := v.announce(e, st, res, kind)
		if res.Outcome == enrollment.Accepted && (kind == confirming || kind == regenerating) && st.RecoveryGeneration > 0 {
			d.RecoveryCodes = otp.RecoveryCodes(key, st.RecoveryGeneration, int(st.RecoveryCodes))
		}
		return d, nil
	}
	return Decision{}, unavailable("too many concurrent attempts for this user; retry")
}

func maxRetries(n int) int { return cmp.Or(n, 10) }

// precheck answers what needs no code check, by the semantics table of DESIGN.md.
func (v *Verifier) precheck(p v1alpha1.ResolvedPolicy, e *v1alpha1.UserEnrollment, kind attempt) (Decision, bool, error) {
	if p.Mode == v1alpha1.ModeDisabled {
		if kind != verifying && kind != recovering {
			return Decision{}, true, disabled(v.Policy)
		}
		return Decision{Result: NotRequired}, true, nil
	}
	if kind == resyncing {
		return v.resyncPrecheck(p, e)
	}
	if kind == recovering || kind == regenerating {
		if p.RecoveryCodes == 0 {
			return Decision{}, true, refuse(ErrRecoveryOff, "policy %s gives no recovery codes (recoveryCodes is 0)", v.Policy)
		}
		if kind == regenerating {
			return v.confirmedPrecheck(e)
		}
	}
	confirm := kind == confirming
	confirmed := e != nil && e.Status.ConfirmedAt != nil
	switch {
	case confirm && e == nil:
		return Decision{}, true, refuse(ErrNoEnrollment, "no enrollment for this user")
	case confirm && confirmed:
		return Decision{}, true, refuse(ErrAlreadyConfirmed, "the enrollment is already confirmed")
	case confirm && e.Status.SecretUID == "":
		return Decision{}, true, refuse(ErrNoKey, "the enrollment has no key yet (%s)", readyReason(e))
	case confirmed && readyReason(e) == v1alpha1.ReasonKeyLost: // fails closed: see enrollment.KeyLost
		return Decision{Result: ReenrollmentRequired}, true, nil
	case confirm:
		return Decision{}, false, nil
	case confirmed:
		return Decision{}, false, nil
	case p.Mode == v1alpha1.ModeEnforced:
		return Decision{Result: EnrollmentRequired}, true, nil
	default:
		return Decision{Result: NotRequired}, true, nil
	}
}

// resyncPrecheck: resynchronisation is for a confirmed enrollment whose key is in place, under a policy
// that turns it on.
func (v *Verifier) resyncPrecheck(p v1alpha1.ResolvedPolicy, e *v1alpha1.UserEnrollment) (Decision, bool, error) {
	if p.HOTP.ResyncWindow == 0 {
		return Decision{}, true, refuse(ErrResyncOff, "policy %s does not resynchronise HOTP tokens (hotp.resyncWindow is 0)", v.Policy)
	}
	return v.confirmedPrecheck(e)
}

// confirmedPrecheck: what maintains an enrollment (resynchronisation, new recovery codes) is for a
// confirmed enrollment whose key is in place.
func (v *Verifier) confirmedPrecheck(e *v1alpha1.UserEnrollment) (Decision, bool, error) {
	switch {
	case e == nil:
		return Decision{}, true, refuse(ErrNoEnrollment, "no enrollment for this user")
	case e.Status.ConfirmedAt == nil:
		return Decision{}, true, refuse(ErrNotConfirmed, "the enrollment is not confirmed yet: confirm it with a first code")
	case readyReason(e) == v1alpha1.ReasonKeyLost:
		return Decision{Result: ReenrollmentRequired}, true, nil
	}
	return Decision{}, false, nil
}

// check evaluates a code against the enrollment's own snapshot of parameters and records what makes a
// replay impossible: the TOTP step, or the next HOTP counter. A code refused for replay is Used, not Wrong.
func check(st *v1alpha1.VerificationState, params otp.Params, key []byte, code string, now time.Time,
	p v1alpha1.ResolvedPolicy) enrollment.Verdict {
	switch params.Method {
	case v1alpha1.MethodTOTP:
		if step, ok := otp.CheckTOTP(key, params, code, now, p.TOTP.SkewSteps, st.LastUsedStep); ok {
			st.LastUsedStep = &step
			return enrollment.Right
		}
		if otp.UsedTOTP(key, params, code, now, p.TOTP.SkewSteps, st.LastUsedStep) {
			return enrollment.Used
		}
	case v1alpha1.MethodHOTP:
		counter := ptr.Deref(st.HOTPCounter, 0)
		if next, ok := otp.CheckHOTP(key, params, code, counter, p.HOTP.LookAhead); ok {
			st.HOTPCounter = &next
			return enrollment.Right
		}
		if otp.UsedHOTP(key, params, code, counter, p.HOTP.LookAhead) {
			return enrollment.Used
		}
	}
	return enrollment.Wrong
}

func (v *Verifier) announce(e *v1alpha1.UserEnrollment, st v1alpha1.VerificationState, res enrollment.Result, kind attempt) Decision {
	switch {
	case res.Outcome == enrollment.Accepted && kind == confirming:
		v.event(e, corev1.EventTypeNormal, v1alpha1.EventReasonEnrolled, "Enrollment confirmed with a first valid code")
		return Decision{Result: Confirmed}
	case res.Outcome == enrollment.Accepted && kind == resyncing:
		v.event(e, corev1.EventTypeNormal, v1alpha1.EventReasonResynchronized,
			fmt.Sprintf("HOTP counter moved to %d by two consecutive codes", ptr.Deref(st.HOTPCounter, 0)))
		return Decision{Result: Resynchronized}
	case res.Outcome == enrollment.Accepted && kind == recovering:
		left := enrollment.RecoveryCodesLeft(&st)
		v.event(e, corev1.EventTypeWarning, v1alpha1.EventReasonRecoveryCodeUsed,
			fmt.Sprintf("A recovery code was used in place of a code; %d left", ptr.Deref(left, 0)))
		return Decision{Result: Accepted, RecoveryCodesRemaining: left}
	case res.Outcome == enrollment.Accepted && kind == regenerating:
		v.event(e, corev1.EventTypeNormal, v1alpha1.EventReasonRecoveryCodesRegenerated,
			fmt.Sprintf("%d new recovery codes issued; every earlier one is void", st.RecoveryCodes))
		return Decision{Result: Regenerated}
	case res.Outcome == enrollment.Accepted:
		return Decision{Result: Accepted}
	}
	if res.LockedNow {
		v.event(e, corev1.EventTypeWarning, v1alpha1.EventReasonLockedOut,
			fmt.Sprintf("Locked after %d wrong codes", st.FailedAttempts))
	}
	return Decision{Result: Rejected, RemainingAttempts: res.RemainingAttempts, RetryAfter: res.RetryAfter, LockedNow: res.LockedNow}
}

func (v *Verifier) event(regarding client.Object, eventType, reason, msg string) {
	if v.Events != nil {
		v.Events(regarding, eventType, reason, msg)
	}
}

// distrust refuses to obey the policy's ConfigMap for why, and says so once in a Warning Event on the
// policy: again only when the cause changes, or after a ConfigMap was trusted in between.
func (v *Verifier) distrust(policy *v1alpha1.TwoFactorPolicy, why string) error {
	if last := v.distrusted.Swap(&why); last == nil || *last != why {
		v.event(policy, corev1.EventTypeWarning, v1alpha1.EventReasonConfigMapNotTrusted, why)
	}
	return unavailable("%s", why)
}

// reread reads e from the API server again (after a write conflict, or before answering as though it were
// not confirmed), and remembers it unless it is being deleted: the next decision builds on the write that
// won.
func (v *Verifier) reread(ctx context.Context, e *v1alpha1.UserEnrollment) (*v1alpha1.UserEnrollment, error) {
	d := v.directory()
	mark := d.reading()
	fresh := &v1alpha1.UserEnrollment{}
	if err := v.Client.Get(ctx, client.ObjectKeyFromObject(e), fresh); err != nil {
		return nil, apiFailure(err, "reading the enrollment again failed")
	}
	lean(fresh)
	if fresh.DeletionTimestamp.IsZero() {
		d.settle(e.Spec.User, mark, fresh)
	}
	return fresh, nil
}

// resolvedPolicy reads the policy the manager rendered into the verifier ConfigMap. It obeys only a
// ConfigMap that its TwoFactorPolicy, as it exists now, controls, and whose content is one the CRD allows:
// anything else (a copy anyone who may create ConfigMaps could plant, a forged owner, content it does not
// understand) makes every decision unavailable, never lowers the bar. A policy found trusted is kept until
// a watch event of either object (policyEvents) says to look again.
func (v *Verifier) resolvedPolicy(ctx context.Context) (v1alpha1.ResolvedPolicy, error) {
	if age := time.Since(time.Unix(0, v.freshAt.Load())); v.MaxStaleness > 0 && age > v.MaxStaleness {
		return v1alpha1.ResolvedPolicy{}, unavailable("policy %s was last confirmed current %v ago, more than %v: "+
			"the API server cannot be reached or the watch is behind", v.Policy, age.Truncate(time.Second), v.MaxStaleness)
	}
	var events uint64 // read before the cache: an event after this makes the next decision look again
	if v.policyEvents != nil {
		events = v.policyEvents.Load()
		if last := v.policy.Load(); last != nil && last.events == events {
			return last.policy, nil
		}
	}
	cm := &corev1.ConfigMap{}
	if err := v.Cache.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: render.ConfigMapName(v.Policy)}, cm); err != nil {
		return v1alpha1.ResolvedPolicy{}, unavailable("policy %s is not loaded: %v", v.Policy, apiReason(err))
	}
	owner := &v1alpha1.TwoFactorPolicy{}
	if err := v.Cache.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: v.Policy}, owner); err != nil {
		return v1alpha1.ResolvedPolicy{}, unavailable("TwoFactorPolicy %s is not loaded: %v", v.Policy, apiReason(err))
	}
	if !metav1.IsControlledBy(cm, owner) {
		return v1alpha1.ResolvedPolicy{}, v.distrust(owner, fmt.Sprintf(
			"ConfigMap %s is not controlled by TwoFactorPolicy %s: not obeyed", cm.Name, v.Policy))
	}
	var p v1alpha1.ResolvedPolicy
	if last := v.policy.Load(); last != nil && last.resourceVersion == cm.ResourceVersion && last.owner == owner.UID {
		p = last.policy // the same ConfigMap, parsed before
	} else {
		parsed, err := render.ParseVerifierConfigMap(cm)
		if err != nil {
			return parsed, v.distrust(owner, fmt.Sprintf("policy %s cannot be read: %v", v.Policy, err))
		}
		p = parsed
	}
	v.policy.Store(&parsedPolicy{resourceVersion: cm.ResourceVersion, owner: owner.UID, policy: p, events: events})
	v.distrusted.Store(nil)
	return p, nil
}

// CheckFreshness reads the policy's ConfigMap from the API server (a quorum read) and, when the cache holds
// the very same version, records that the cached policy was current when the read began. Started runs it
// every MaxStaleness/4: a replica whose watch is cut off or behind stops answering within MaxStaleness,
// rather than answering from a policy an administrator may have changed meanwhile.
func (v *Verifier) CheckFreshness(ctx context.Context) error {
	began := time.Now()
	key := client.ObjectKey{Namespace: v.Namespace, Name: render.ConfigMapName(v.Policy)}
	live, cached := &metav1.PartialObjectMetadata{}, &corev1.ConfigMap{}
	live.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	liveErr, cachedErr := v.Client.Get(ctx, key, live), v.Cache.Get(ctx, key, cached)
	switch {
	case apierrors.IsNotFound(liveErr) && apierrors.IsNotFound(cachedErr):
	case liveErr != nil:
		return fmt.Errorf("reading configmap %s: %w", key.Name, liveErr)
	case cachedErr != nil || cached.ResourceVersion != live.ResourceVersion:
		return fmt.Errorf("the cache does not hold the current configmap %s yet", key.Name)
	}
	v.freshAt.Store(began.UnixNano())
	return nil
}

// enrollment returns the user's enrollment under the policy (the one that precedes any duplicate, as the
// manager decides), or nil: as the replica remembers it, or as the API server has it now. The enrollment is
// shared: callers copy before changing it.
func (v *Verifier) enrollment(ctx context.Context, user string) (*v1alpha1.UserEnrollment, error) {
	d := v.directory()
	if e, ok := d.user(user); ok {
		return e, nil
	}
	mark := d.reading()
	e, err := v.keyed(ctx, user)
	if err == nil && e == nil {
		e, err = v.winner(ctx, user)
	}
	if err != nil {
		return nil, err
	}
	d.settle(user, mark, e)
	return e, nil
}

// keyed returns the user's enrollment that holds the user's key, or nil, found by name: the one the user's
// state Lease names (controller reference), else the one named after the user (enrollment.Name: what
// self-enrollment and the kubectl plugin create, before its first decision wrote a Lease). An enrollment
// bound to a key precedes every other of its user (see enrollment.Precedes), and the manager binds one key
// per user, so it is the one. A name only points the way: the enrollment is read from the API server and
// must be the user's, keyed, and not being deleted; when neither name leads to one, winner decides.
func (v *Verifier) keyed(ctx context.Context, user string) (*v1alpha1.UserEnrollment, error) {
	name := render.StateLeaseName(v.Policy, user)
	l, err := v.Leases.Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	switch {
	case apierrors.IsNotFound(err):
		v.seedState(name, nil) // no state yet
	case err != nil:
		return nil, apiFailure(err, "reading the enrollment's state failed")
	default:
		if owner := render.ControllingEnrollment(l); owner != nil {
			e, err := v.keyedNamed(ctx, user, owner.Name)
			if err != nil || (e != nil && e.UID == owner.UID) {
				if e != nil {
					v.seedState(name, l)
				}
				return e, err
			}
		}
	}
	return v.keyedNamed(ctx, user, enrollment.Name(v.Policy, user))
}

// keyedNamed returns the enrollment called name when it is the user's under the policy, keyed and not being
// deleted, or nil.
func (v *Verifier) keyedNamed(ctx context.Context, user, name string) (*v1alpha1.UserEnrollment, error) {
	e := &v1alpha1.UserEnrollment{}
	switch err := v.Client.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: name}, e); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, apiFailure(err, "reading the enrollment failed")
	}
	if !e.DeletionTimestamp.IsZero() || e.Spec.User != user || e.Spec.PolicyRef.Name != v.Policy || e.Status.SecretUID == "" {
		return nil, nil
	}
	return lean(e), nil
}

// seedState remembers the state Lease name as read on the way to its enrollment (l, nil when there is none),
// as the decision's first read of it, unless the replica knows it already.
func (v *Verifier) seedState(name string, l *coordinationv1.Lease) {
	if _, known := v.known(name); !known {
		v.remembered().Add(name, knownLease{lease: withoutManagedFields(l)})
	}
}

// lean drops from an enrollment the replica remembers what it never reads, the largest parts of it:
// managed fields and annotations (a GitOps tool's last-applied copy). A status update sends it back without
// them, and the API server keeps its own (a status update changes nothing but the status).
func lean(e *v1alpha1.UserEnrollment) *v1alpha1.UserEnrollment {
	e.ManagedFields, e.Annotations = nil, nil
	return e
}

// winner lists the user's enrollments under the policy by field selector and returns the one that
// precedes, or nil: the answer for a user without a key, or without any enrollment. The API server
// serves it from its watch cache, looking at every enrollment of the namespace: about 6 ms of its CPU at
// 10,000, 245 ms at 100,000 (README, Performance); the answer is remembered until the user's enrollments
// change.
func (v *Verifier) winner(ctx context.Context, user string) (*v1alpha1.UserEnrollment, error) {
	var list v1alpha1.UserEnrollmentList
	if err := v.Client.List(ctx, &list, client.InNamespace(v.Namespace),
		client.MatchingFields{"spec.policyRef.name": v.Policy, "spec.user": user}); err != nil {
		return nil, apiFailure(err, "reading enrollments failed")
	}
	found := enrollment.Winner(list.Items)
	if found == nil {
		return nil, nil
	}
	return lean(found.DeepCopy()), nil
}

// key returns the key and parameters of e's Secret, which must be the Secret its state belongs to: as the
// replica remembers it (a Secret is immutable, so its UID names one key for ever), or read from the API
// server.
func (v *Verifier) key(ctx context.Context, e *v1alpha1.UserEnrollment) (otp.Params, []byte, error) {
	d := v.directory()
	if k, ok := d.key(types.UID(e.Status.SecretUID)); ok && k.owner == e.UID {
		return k.params, k.key, nil
	}
	mark := d.keyMark()
	s := &corev1.Secret{}
	if err := v.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}, s); err != nil {
		return otp.Params{}, nil, unavailable("the enrollment's key is not available: %v", apiReason(err))
	}
	if string(s.UID) != e.Status.SecretUID || !metav1.IsControlledBy(s, e) {
		return otp.Params{}, nil, unavailable("the enrollment's key is being replaced; retry")
	}
	params, key, err := render.ParseOTPSecret(s)
	if err != nil {
		return otp.Params{}, nil, unavailable("the enrollment's key cannot be read: %v", err)
	}
	d.settleKey(s.UID, mark, parsedKey{owner: e.UID, params: params, key: key})
	return params, key, nil
}

func readyReason(e *v1alpha1.UserEnrollment) string {
	if c := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return "not reconciled yet"
}

// apiReason shortens an API error to its reason, never echoing object content.
func apiReason(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return string(status.Status().Reason)
	}
	return err.Error()
}
