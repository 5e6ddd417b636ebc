package v1alpha1

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestMinimalPolicyResolvesToTheDocumentedDefaults(t *testing.T) {
	p := &TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Name: "webapp"},
		Spec: TwoFactorPolicySpec{Mode: ModeEnforced, Methods: []Method{MethodTOTP}}}
	got := p.Resolve()
	want := ResolvedPolicy{
		Mode: ModeEnforced, Methods: []Method{MethodTOTP}, Issuer: "webapp", SecretBytes: 20,
		TOTP:           ResolvedTOTP{Algorithm: AlgorithmSHA1, Digits: 6, PeriodSeconds: 30, SkewSteps: 1},
		HOTP:           ResolvedHOTP{Algorithm: AlgorithmSHA1, Digits: 6, LookAhead: 4},
		Lockout:        ResolvedLockout{MaxFailures: 3, ThrottleSeconds: 0, MaxTemporaryLockouts: 10},
		SelfEnrollment: ResolvedSelfEnrollment{Mode: SelfEnrollmentOpen, PendingExpirySeconds: 86400},
		RecoveryCodes:  10,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Resolve() = %+v\nwant %+v", got, want)
	}
}

func TestExplicitValuesWinIncludingZeros(t *testing.T) {
	p := &TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Name: "webapp"}, Spec: TwoFactorPolicySpec{
		Mode: ModeOptional, Methods: []Method{MethodHOTP, MethodTOTP}, Issuer: "Acme", SecretBytes: 32,
		TOTP:           &TOTPSettings{Algorithm: AlgorithmSHA512, Digits: 8, PeriodSeconds: 60, SkewSteps: ptr.To[int32](0)},
		HOTP:           &HOTPSettings{Algorithm: AlgorithmSHA256, Digits: 8, LookAhead: ptr.To[int32](0), ResyncWindow: 50},
		Lockout:        &LockoutSettings{MaxFailures: 5, ThrottleSeconds: ptr.To[int32](300), MaxTemporaryLockouts: ptr.To[int32](0)},
		SelfEnrollment: &SelfEnrollmentSettings{Mode: SelfEnrollmentAdminOnly, PendingExpirySeconds: 3600},
		RecoveryCodes:  ptr.To[int32](0),
	}}
	got := p.Resolve()
	want := ResolvedPolicy{
		Mode: ModeOptional, Methods: []Method{MethodHOTP, MethodTOTP}, Issuer: "Acme", SecretBytes: 32,
		TOTP:           ResolvedTOTP{Algorithm: AlgorithmSHA512, Digits: 8, PeriodSeconds: 60, SkewSteps: 0},
		HOTP:           ResolvedHOTP{Algorithm: AlgorithmSHA256, Digits: 8, LookAhead: 0, ResyncWindow: 50},
		Lockout:        ResolvedLockout{MaxFailures: 5, ThrottleSeconds: 300, MaxTemporaryLockouts: 0},
		SelfEnrollment: ResolvedSelfEnrollment{Mode: SelfEnrollmentAdminOnly, PendingExpirySeconds: 3600},
		RecoveryCodes:  0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Resolve() = %+v\nwant %+v", got, want)
	}
	if m := got.MethodFor(""); m != MethodHOTP {
		t.Errorf("default method = %q, want the policy's first, HOTP", m)
	}
	if m := got.MethodFor(MethodTOTP); m != MethodTOTP {
		t.Errorf("explicit method = %q, want TOTP", m)
	}
}

func TestDisabledPolicyAllowsNoMethod(t *testing.T) {
	r := (&TwoFactorPolicy{Spec: TwoFactorPolicySpec{Mode: ModeDisabled, Methods: []Method{MethodTOTP}}}).Resolve()
	if r.Allows(MethodTOTP) {
		t.Error("a Disabled policy allows enrollment")
	}
	r.Mode = ModeOptional
	if !r.Allows(MethodTOTP) || r.Allows(MethodHOTP) {
		t.Error("Allows does not follow the methods list")
	}
}
