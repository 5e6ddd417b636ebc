package v1alpha1

import "slices"

// Defaults of a TwoFactorPolicy. They are resolved in code, never written into the object, so that what a
// GitOps tool applied is exactly what it reads back.
const (
	DefaultAlgorithm       = AlgorithmSHA1
	DefaultDigits          = 6
	DefaultPeriodSeconds   = 30
	DefaultSkewSteps       = 1
	DefaultLookAhead       = 4
	DefaultSecretBytes     = 20
	DefaultMaxFailures     = 3
	DefaultThrottleSeconds = 0
	// DefaultMaxTemporaryLockouts: after ten throttled locks without a success, an administrator decides.
	DefaultMaxTemporaryLockouts = 10
	DefaultSelfEnrollment       = SelfEnrollmentOpen
	DefaultPendingExpirySeconds = 86400
	DefaultRecoveryCodes        = 10
)

// ResolvedPolicy is a TwoFactorPolicy spec with every default filled in. It is the content of the verifier
// ConfigMap, the contract between the manager and the verifier.
// +kubebuilder:object:generate=false
type ResolvedPolicy struct {
	// mode is the policy's mode.
	// +required
	Mode Mode `json:"mode"`
	// methods are the methods users may enroll with, the default first; empty, never null.
	// +required
	// +listType=set
	Methods []Method `json:"methods"`
	// issuer is the issuer label of new enrollments: spec.issuer or the policy name.
	// +required
	Issuer string `json:"issuer"`
	// totp holds the TOTP parameters.
	// +required
	TOTP ResolvedTOTP `json:"totp"`
	// hotp holds the HOTP parameters.
	// +required
	HOTP ResolvedHOTP `json:"hotp"`
	// secretBytes is the size of new keys in bytes.
	// +required
	SecretBytes int32 `json:"secretBytes"`
	// lockout holds the lockout parameters.
	// +required
	Lockout ResolvedLockout `json:"lockout"`
	// selfEnrollment holds the self-enrollment parameters.
	// +required
	SelfEnrollment ResolvedSelfEnrollment `json:"selfEnrollment"`
	// recoveryCodes is how many recovery codes a confirmed enrollment gets; 0: none.
	// +required
	RecoveryCodes int32 `json:"recoveryCodes"`
}

// ResolvedSelfEnrollment holds every self-enrollment parameter.
// +kubebuilder:object:generate=false
type ResolvedSelfEnrollment struct {
	// mode is Open or AdminOnly.
	// +required
	Mode SelfEnrollmentMode `json:"mode"`
	// pendingExpirySeconds is how long a self-enrollment may stay unconfirmed.
	// +required
	PendingExpirySeconds int32 `json:"pendingExpirySeconds"`
}

// ResolvedTOTP holds every TOTP parameter.
// +kubebuilder:object:generate=false
type ResolvedTOTP struct {
	// algorithm is the HMAC hash function of new enrollments.
	// +required
	Algorithm Algorithm `json:"algorithm"`
	// digits is the code length of new enrollments.
	// +required
	Digits int32 `json:"digits"`
	// periodSeconds is the time step of new enrollments.
	// +required
	PeriodSeconds int32 `json:"periodSeconds"`
	// skewSteps is how many steps before and after the current one every enrollment accepts.
	// +required
	SkewSteps int32 `json:"skewSteps"`
}

// ResolvedHOTP holds every HOTP parameter.
// +kubebuilder:object:generate=false
type ResolvedHOTP struct {
	// algorithm is the HMAC hash function of new enrollments.
	// +required
	Algorithm Algorithm `json:"algorithm"`
	// digits is the code length of new enrollments.
	// +required
	Digits int32 `json:"digits"`
	// lookAhead is how many counter values past the stored one every enrollment accepts.
	// +required
	LookAhead int32 `json:"lookAhead"`
	// resyncWindow is how far past the stored counter a resynchronising pair of codes is searched; 0: off.
	// +required
	ResyncWindow int32 `json:"resyncWindow"`
}

// ResolvedLockout holds every lockout parameter.
// +kubebuilder:object:generate=false
type ResolvedLockout struct {
	// maxFailures consecutive wrong codes lock an enrollment.
	// +required
	MaxFailures int32 `json:"maxFailures"`
	// throttleSeconds is how long a lock lasts; 0 until an administrator unlocks.
	// +required
	ThrottleSeconds int32 `json:"throttleSeconds"`
	// maxTemporaryLockouts is how many throttled locks may end by themselves without a success in
	// between; 0 for no bound.
	// +required
	MaxTemporaryLockouts int32 `json:"maxTemporaryLockouts"`
}

// Resolve returns the policy with every default filled in.
func (p *TwoFactorPolicy) Resolve() ResolvedPolicy {
	s := p.Spec
	r := ResolvedPolicy{
		Mode:          s.Mode,
		Methods:       slices.Clone(s.Methods),
		Issuer:        or(s.Issuer, p.Name),
		SecretBytes:   or(s.SecretBytes, DefaultSecretBytes),
		RecoveryCodes: deref(s.RecoveryCodes, DefaultRecoveryCodes),
		TOTP: ResolvedTOTP{
			Algorithm: DefaultAlgorithm, Digits: DefaultDigits,
			PeriodSeconds: DefaultPeriodSeconds, SkewSteps: DefaultSkewSteps,
		},
		HOTP: ResolvedHOTP{Algorithm: DefaultAlgorithm, Digits: DefaultDigits, LookAhead: DefaultLookAhead},
		Lockout: ResolvedLockout{MaxFailures: DefaultMaxFailures, ThrottleSeconds: DefaultThrottleSeconds,
			MaxTemporaryLockouts: DefaultMaxTemporaryLockouts},
		SelfEnrollment: ResolvedSelfEnrollment{Mode: DefaultSelfEnrollment, PendingExpirySeconds: DefaultPendingExpirySeconds},
	}
	if r.Methods == nil {
		r.Methods = []Method{}
	}
	if t := s.TOTP; t != nil {
		r.TOTP.Algorithm = or(t.Algorithm, r.TOTP.Algorithm)
		r.TOTP.Digits = or(t.Digits, r.TOTP.Digits)
		r.TOTP.PeriodSeconds = or(t.PeriodSeconds, r.TOTP.PeriodSeconds)
		r.TOTP.SkewSteps = deref(t.SkewSteps, r.TOTP.SkewSteps)
	}
	if h := s.HOTP; h != nil {
		r.HOTP.Algorithm = or(h.Algorithm, r.HOTP.Algorithm)
		r.HOTP.Digits = or(h.Digits, r.HOTP.Digits)
		r.HOTP.LookAhead = deref(h.LookAhead, r.HOTP.LookAhead)
		r.HOTP.ResyncWindow = h.ResyncWindow
	}
	if l := s.Lockout; l != nil {
		r.Lockout.MaxFailures = or(l.MaxFailures, r.Lockout.MaxFailures)
		r.Lockout.ThrottleSeconds = deref(l.ThrottleSeconds, r.Lockout.ThrottleSeconds)
		r.Lockout.MaxTemporaryLockouts = deref(l.MaxTemporaryLockouts, r.Lockout.MaxTemporaryLockouts)
	}
	if se := s.SelfEnrollment; se != nil {
		r.SelfEnrollment.Mode = or(se.Mode, r.SelfEnrollment.Mode)
		r.SelfEnrollment.PendingExpirySeconds = or(se.PendingExpirySeconds, r.SelfEnrollment.PendingExpirySeconds)
	}
	return r
}

// Allows reports whether users may enroll with method m: the policy is not Disabled and lists m.
func (r *ResolvedPolicy) Allows(m Method) bool {
	return r.Mode != ModeDisabled && slices.Contains(r.Methods, m)
}

// MethodFor returns the method an enrollment that asks for method requested uses: requested, or the
// policy's first when it asks for none.
func (r *ResolvedPolicy) MethodFor(requested Method) Method {
	if requested != "" || len(r.Methods) == 0 {
		return requested
	}
	return r.Methods[0]
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
