package verifier

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestEveryRefusalHasItsHTTPStatusAndFaultsFailClosed(t *testing.T) {
	tests := []struct {
		err    error
		status int
		msg    string
	}{
		{refuse(ErrDisabled, "disabled by policy webapp"), http.StatusForbidden, "disabled by policy webapp"},
		{refuse(ErrMethodNotAllowed, "no HOTP"), http.StatusForbidden, "no HOTP"},
		{refuse(ErrNoEnrollment, "none"), http.StatusNotFound, "none"},
		{refuse(ErrAlreadyConfirmed, "done"), http.StatusConflict, "done"},
		{refuse(ErrNoKey, "no key"), http.StatusConflict, "no key"},
		{refuse(ErrOtherMethodPending, "TOTP pending"), http.StatusConflict, "TOTP pending"},
		{refuse(ErrLocked, "locked"), http.StatusTooManyRequests, "locked"},
		{unavailable("recording failed"), http.StatusServiceUnavailable, "recording failed"},
		{fmt.Errorf("wrapped: %w", refuse(ErrNoEnrollment, "none")), http.StatusNotFound, "wrapped: none"},
		// Not a refusal: a fault whose text may say anything, so it is not shown.
		{errors.New("secret ns/x holds JBSWY3DPEHPK3PXP"), http.StatusServiceUnavailable, "internal error"},
	}
	for _, tt := range tests {
		status, msg := statusOf(tt.err)
		if status != tt.status || msg != tt.msg {
			t.Errorf("%v: %d %q, want %d %q", tt.err, status, msg, tt.status, tt.msg)
		}
	}
	for _, kind := range statuses {
		if status, _ := statusOf(refuse(kind.kind, "x")); status != kind.status {
			t.Errorf("%v maps to %d, want %d: an earlier kind shadows it", kind.kind, status, kind.status)
		}
	}
}
