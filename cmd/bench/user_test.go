package main

import (
	"testing"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
)

// The benchmark's clients must follow a user's counter exactly as the verifier moves it, or one run in a few
// fails on "already_used": where a code recurs within the look-ahead window, the verifier takes every
// counter up to its last occurrence (a code is accepted only once), and so must the client.
func TestAUsersCounterFollowsTheVerifiersPastARecurringCode(t *testing.T) {
	p := otp.Params{Method: v1alpha1.MethodHOTP, Algorithm: v1alpha1.AlgorithmSHA1, Digits: 6}
	u := &user{key: []byte("12345678901234567890"), params: p}
	recurring := false
	for c := uint64(0); c < 5_000_000 && !recurring; c++ {
		u.counter = c
		code := u.code()
		next, ok := otp.CheckHOTP(u.key, p, code, int64(c), v1alpha1.DefaultLookAhead)
		if !ok {
			t.Fatalf("counter %d: its own code refused", c)
		}
		recurring = uint64(next) != c+1
		u.accepted()
		if u.counter != uint64(next) {
			t.Fatalf("counter %d: the client moved to %d, the verifier to %d", c, u.counter, next)
		}
	}
	if !recurring {
		t.Fatal("no code recurring within the look-ahead window was found to check")
	}
}
