package verifier

import (
	"errors"
	"fmt"
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
	// ErrUnavailable: state could not be read or recorded, so the verifier refuses (fails closed).
	ErrUnavailable = errors.New("unavailable")
)

// refusal is an error of one of the kinds above with a message for the caller: no key material, no object
// content.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// unavailable is the fail-closed answer: state could not be read or recorded.
func unavailable(format string, args ...any) error { return refuse(ErrUnavailable, format, args...) }
