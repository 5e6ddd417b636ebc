package verifier

import (
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Why the verifier refuses a request. Every error the verifier returns wraps one of them (test with
// errors.Is); http.go alone maps them to HTTP statuses. Anything else is a fault, answered as unavailable.
var (
	// ErrDisabled: the policy is Disabled, so nobody enrolls.
	ErrDisabled = errors.New("two-factor authentication is disabled")
	// ErrMethodNotAllowed: the policy does not let users enroll with the method asked for.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrNoEnrollment: the user has no enrollment to confirm.
	ErrNoEnrollment = errors.New("no enrollment")
	// ErrAlreadyConfirmed: the user's enrollment is confirmed already.
	ErrAlreadyConfirmed = errors.New("already confirmed")
	// ErrNoKey: the user's enrollment has no key yet.
	ErrNoKey = errors.New("no key yet")
	// ErrNotConfirmed: the request needs a confirmed enrollment (resynchronisation).
	ErrNotConfirmed = errors.New("not confirmed")
	// ErrResyncOff: the policy's hotp.resyncWindow is 0.
	ErrResyncOff = errors.New("resynchronisation off")
	// ErrRecoveryOff: the policy gives no recovery codes (recoveryCodes is 0).
	ErrRecoveryOff = errors.New("recovery codes off")
	// ErrOtherMethodPending: a pending enrollment of the user uses another method.
	ErrOtherMethodPending = errors.New("pending with another method")
	// ErrLocked: the enrollment is locked by wrong codes, so it shows no provisioning material.
	ErrLocked = errors.New("locked")
	// ErrSelfEnrollmentClosed: the policy's selfEnrollment.mode is AdminOnly.
	ErrSelfEnrollmentClosed = errors.New("self-enrollment closed")
	// ErrSelfEnrollmentRate: this replica's bound on the rate of new self-enrollments is reached.
	ErrSelfEnrollmentRate = errors.New("self-enrollment rate exceeded")
	// ErrTooManyPending: the policy's bound on unconfirmed self-enrollments is reached.
	ErrTooManyPending = errors.New("too many pending self-enrollments")
	// ErrThrottled: the API server refused a request for load (429, API Priority and Fairness), so the
	// verifier refuses (fails closed) and says when to retry; nothing is counted against the user.
	ErrThrottled = errors.New("throttled by the API server")
	// ErrClock: this replica's clock is too far from the API server's to judge TOTP codes (see ServerClock).
	ErrClock = errors.New("clock fault")
	// ErrUnavailable: state could not be read or recorded, so the verifier refuses (fails closed).
	ErrUnavailable = errors.New("unavailable")
)

// refusal is an error of one of the kinds above with a message for the caller: no key material, no object
// content.
type refusal struct {
	kind error
	msg  string
	// retryAfter is when the caller may retry, when the refusal knows.
	retryAfter time.Duration
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// disabled is the refusal of anything but not_required under a Disabled policy.
func disabled(policy string) error {
	return refuse(ErrDisabled, "two-factor authentication is disabled by policy %s", policy)
}

// methodNotAllowed is the refusal to enroll with a method the policy does not list.
func methodNotAllowed(policy string, m v1alpha1.Method) error {
	return refuse(ErrMethodNotAllowed, "policy %s does not allow method %s", policy, m)
}

// unavailable is the fail-closed answer: state could not be read or recorded.
func unavailable(format string, args ...any) error { return refuse(ErrUnavailable, format, args...) }

// apiFailure is the fail-closed answer to a failed API request: "what: reason", never object content. A 429
// (the API server shedding load) is ErrThrottled with the delay the server suggested.
func apiFailure(err error, what string) error {
	if apierrors.IsTooManyRequests(err) {
		delay, ok := apierrors.SuggestsClientDelay(err)
		if !ok || delay <= 0 {
			delay = 1
		}
		return &refusal{kind: ErrThrottled, msg: what + ": the API server is overloaded; retry",
			retryAfter: time.Duration(delay) * time.Second}
	}
	return unavailable("%s: %v", what, apiReason(err))
}

// retryAfter is when the caller of a refused request may retry, or 0 when the refusal does not say.
func retryAfter(err error) time.Duration {
	var r *refusal
	if errors.As(err, &r) {
		return r.retryAfter
	}
	return 0
}
