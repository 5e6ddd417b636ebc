// Package otp generates keys and checks one-time codes: HOTP (RFC 4226) and TOTP (RFC 6238).
//
// Codes are computed with crypto/hmac and compared in constant time. TOTP checks take the last
// accepted time step and refuse it and every earlier step (RFC 6238 §5.2), so a code is accepted at
// most once. The package never puts key material in an error message.
package otp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"strings"
	"time"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Limits of the parameters this package accepts.
const (
	// MinSecretBytes is the smallest key size accepted (128 bits, RFC 4226 §4 R6).
	MinSecretBytes = 16
	// MaxDigits is the longest code (see ValidDigits).
	MaxDigits = 8
	// MaxSkewSteps is the widest TOTP window, in periods on each side of the current one.
	MaxSkewSteps = 10
	// MaxLookAhead is the most HOTP counter values accepted past the stored one.
	MaxLookAhead = 100
)

// Params are the code parameters snapshotted into an enrollment's Secret.
type Params struct {
	Method        v1alpha1.Method    // TOTP or HOTP
	Algorithm     v1alpha1.Algorithm // SHA1, SHA256 or SHA512
	Digits        int32              // 6 or 8
	PeriodSeconds int32              // TOTP only
}

// Validate reports whether p is complete and supported. CheckTOTP and CheckHOTP accept no code with
// invalid params; Validate tells why.
func (p Params) Validate() error {
	switch p.Method {
	case v1alpha1.MethodTOTP:
		if p.PeriodSeconds <= 0 {
			return fmt.Errorf("otp: periodSeconds must be positive, not %d", p.PeriodSeconds)
		}
	case v1alpha1.MethodHOTP:
	default:
		return fmt.Errorf("otp: method must be TOTP or HOTP, not %q", p.Method)
	}
	if _, err := hashFor(p.Algorithm); err != nil {
		return err
	}
	return checkDigits(p.Digits)
}

func hashFor(alg v1alpha1.Algorithm) (func() hash.Hash, error) {
	switch alg {
	case v1alpha1.AlgorithmSHA1:
		return sha1.New, nil
	case v1alpha1.AlgorithmSHA256:
		return sha256.New, nil
	case v1alpha1.AlgorithmSHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("otp: algorithm must be SHA1, SHA256 or SHA512, not %q", alg)
}

// ValidDigits reports whether codes may be d digits long: 6 or 8, the lengths authenticator apps show.
// RFC 4226 §5.3 allows 6 to 8; the API's enum on totp.digits and hotp.digits is this same rule, and a test
// against the API server holds the two together.
func ValidDigits(d int32) bool { return d == 6 || d == 8 }

func checkDigits(d int32) error {
	if !ValidDigits(d) {
		return fmt.Errorf("otp: digits must be 6 or 8, not %d", d)
	}
	return nil
}

var errShortSecret = fmt.Errorf("otp: secret must be at least %d bytes", MinSecretBytes)

// Code returns the RFC 4226 code of secret for counter. For TOTP the counter is the time step,
// floor(unix time / period).
func Code(secret []byte, alg v1alpha1.Algorithm, digits int32, counter uint64) (string, error) {
	c, err := newCoder(secret, alg, digits)
	if err != nil {
		return "", err
	}
	return string(c.code(counter)), nil
}

// coder computes codes of one key, reusing its HMAC state and buffer between counters.
type coder struct {
	mac    hash.Hash
	digits int32
	used   bool
	msg    [8]byte
	sum    [sha512.Size]byte
	out    [MaxDigits]byte
}

func newCoder(secret []byte, alg v1alpha1.Algorithm, digits int32) (*coder, error) {
	h, err := hashFor(alg)
	if err != nil {
		return nil, err
	}
	if err := checkDigits(digits); err != nil {
		return nil, err
	}
	if len(secret) < MinSecretBytes {
		return nil, errShortSecret
	}
	return &coder{mac: hmac.New(h, secret), digits: digits}, nil
}

// code returns the code for counter as ASCII digits; the slice is overwritten by the next call.
func (c *coder) code(counter uint64) []byte {
	if c.used {
		c.mac.Reset()
	}
	c.used = true
	binary.BigEndian.PutUint64(c.msg[:], counter)
	c.mac.Write(c.msg[:])
	sum := c.mac.Sum(c.sum[:0])
	// Dynamic truncation, RFC 4226 §5.3.
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:]) & 0x7fffffff
	out := c.out[:c.digits]
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = '0' + byte(v%10)
		v /= 10
	}
	return out
}

// NormalizeCode returns code without spaces; ok is false unless the rest is exactly digits ASCII digits.
func NormalizeCode(code string, digits int32) (string, bool) {
	code = strings.ReplaceAll(code, " ", "")
	if checkDigits(digits) != nil || len(code) != int(digits) {
		return "", false
	}
	for i := range len(code) {
		if code[i] < '0' || code[i] > '9' {
			return "", false
		}
	}
	return code, true
}

// CheckTOTP checks code against the time steps now-skewSteps..now+skewSteps, where a step is
// floor(unix(now)/p.PeriodSeconds). A step is eligible only when lastUsedStep is nil or the step is
// later than *lastUsedStep (replay protection, RFC 6238 §5.2). It returns the step that matched and
// true, or 0 and false; the caller records the step as the new lastUsedStep.
//
// Every eligible step is evaluated and compared in constant time, so timing does not reveal which
// step matched. If several steps match, the latest wins, so the same code cannot be accepted again
// at a later step. Malformed codes, invalid params (see Params.Validate), keys shorter than
// MinSecretBytes and skewSteps outside 0..MaxSkewSteps accept nothing.
func CheckTOTP(secret []byte, p Params, code string, now time.Time, skewSteps int32, lastUsedStep *int64) (step int64, ok bool) {
	first, last, ok := totpWindow(p, now, skewSteps)
	if !ok {
		return 0, false
	}
	if lastUsedStep != nil && *lastUsedStep >= first {
		if *lastUsedStep == math.MaxInt64 {
			return 0, false
		}
		first = *lastUsedStep + 1
	}
	return check(secret, p, code, first, last)
}

// UsedTOTP reports whether code, which CheckTOTP refused, is the code of a step of the same window that
// lastUsedStep has consumed: a code accepted before (or passed over by a later one) and now replayed, as a
// double submit or a retry does. A replay is no guess; the caller refuses it without counting a failure.
func UsedTOTP(secret []byte, p Params, code string, now time.Time, skewSteps int32, lastUsedStep *int64) bool {
	first, last, ok := totpWindow(p, now, skewSteps)
	if !ok || lastUsedStep == nil {
		return false
	}
	_, used := check(secret, p, code, first, min(last, *lastUsedStep))
	return used
}

// totpWindow returns the steps a TOTP code may match at now, or false when the parameters accept nothing.
func totpWindow(p Params, now time.Time, skewSteps int32) (first, last int64, ok bool) {
	if p.Method != v1alpha1.MethodTOTP || p.Validate() != nil || skewSteps < 0 || skewSteps > MaxSkewSteps {
		return 0, 0, false
	}
	unix := now.Unix()
	if unix < 0 {
		return 0, 0, false
	}
	cur, skew := unix/int64(p.PeriodSeconds), int64(skewSteps)
	if cur > math.MaxInt64-skew {
		return 0, 0, false
	}
	return max(cur-skew, 0), cur + skew, true
}

// CheckHOTP checks code against the counters counter..counter+lookAhead. It returns the next counter to
// store (the matched counter + 1) and true, or 0 and false. Comparison is constant-time over the whole
// window; if several counters match, the highest wins. Malformed codes, invalid params, keys shorter than
// MinSecretBytes, a negative counter and lookAhead outside 0..MaxLookAhead accept nothing.
func CheckHOTP(secret []byte, p Params, code string, counter int64, lookAhead int32) (next int64, ok bool) {
	if !hotpValid(p, counter, lookAhead) {
		return 0, false
	}
	match, ok := check(secret, p, code, counter, counter+int64(lookAhead))
	if !ok {
		return 0, false
	}
	return match + 1, true
}

// UsedHOTP reports whether code, which CheckHOTP refused, is the code of one of the lookAhead+1 counters
// before counter: consumed by an accepted code (or passed over by one), and now replayed. See UsedTOTP.
func UsedHOTP(secret []byte, p Params, code string, counter int64, lookAhead int32) bool {
	if !hotpValid(p, counter, lookAhead) || counter == 0 {
		return false
	}
	_, used := check(secret, p, code, max(counter-1-int64(lookAhead), 0), counter-1)
	return used
}

// MaxResyncWindow is the widest HOTP resynchronisation window: a code pair searched in it matches by
// chance with a probability of about window in 10^12 for 6 digits.
const MaxResyncWindow = 1000

// ResyncHOTP looks for two consecutive codes, code then next, at counters c and c+1 for c in
// counter..counter+window-1: a token pressed past the look-ahead window. It returns the counter to store
// (c+2) and Fresh when found there; Replayed when both codes are of the window's width of counters just
// before counter (used already: a repeated request); NoMatch otherwise. Every counter is computed and compared
// in constant time; malformed codes, invalid params, a window outside 1..MaxResyncWindow and a negative
// counter find nothing.
func ResyncHOTP(secret []byte, p Params, code, next string, counter int64, window int32) (int64, Match) {
	if p.Method != v1alpha1.MethodHOTP || p.Validate() != nil || window < 1 || window > MaxResyncWindow ||
		counter < 0 || counter > math.MaxInt64-2-int64(window) {
		return 0, NoMatch
	}
	a, okA := NormalizeCode(code, p.Digits)
	b, okB := NormalizeCode(next, p.Digits)
	c, err := newCoder(secret, p.Algorithm, p.Digits)
	if !okA || !okB || err != nil {
		return 0, NoMatch
	}
	// Codes of first..last+1, each compared with both: pair i matches when code i is a and code i+1 is b.
	first, last := max(counter-int64(window), 0), counter+int64(window)-1
	var found int64
	matched, prevA := 0, 0
	for n := first; n <= last+1; n++ {
		cur := c.code(uint64(n))
		isB := subtle.ConstantTimeCompare(cur, []byte(b))
		pair := prevA & isB // code n-1 was a and code n is b
		mask := -int64(pair)
		found = found&^mask | (n-1)&mask
		matched |= pair
		prevA = subtle.ConstantTimeCompare(cur, []byte(a))
	}
	switch {
	case matched == 0:
		return 0, NoMatch
	case found >= counter:
		return found + 2, Fresh
	case found+2 <= counter:
		return 0, Replayed
	default: // the first code was used, the second not: no pair the token showed in a row since
		return 0, NoMatch
	}
}

// Match is what a code pair was found to be (see ResyncHOTP).
type Match int

const (
	// NoMatch: not the codes of the window.
	NoMatch Match = iota
	// Fresh: codes past the stored counter.
	Fresh
	// Replayed: codes before the stored counter, used already.
	Replayed
)

func hotpValid(p Params, counter int64, lookAhead int32) bool {
	return p.Method == v1alpha1.MethodHOTP && p.Validate() == nil && lookAhead >= 0 && lookAhead <= MaxLookAhead &&
		counter >= 0 && counter <= math.MaxInt64-1-int64(lookAhead)
}

// check compares code with the codes of counters first..last (0 <= first, both inclusive) in constant
// time and returns the highest counter that matched.
func check(secret []byte, p Params, code string, first, last int64) (int64, bool) {
	code, valid := NormalizeCode(code, p.Digits)
	if !valid || first > last {
		return 0, false
	}
	c, err := newCoder(secret, p.Algorithm, p.Digits)
	if err != nil {
		return 0, false
	}
	want := []byte(code)
	var matched int
	var found int64
	for n := first; n <= last; n++ {
		eq := subtle.ConstantTimeCompare(c.code(uint64(n)), want)
		mask := -int64(eq) // all ones when eq == 1
		found = found&^mask | n&mask
		matched |= eq
	}
	return found, matched == 1
}
