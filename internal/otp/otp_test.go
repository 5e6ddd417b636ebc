package otp

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// RFC seeds (RFC 4226 Appendix D; RFC 6238 Appendix A seed, seed32, seed64, per Errata 2866).
var (
	seed20 = []byte("12345678901234567890")
	seed32 = []byte("12345678901234567890123456789012")
	seed64 = []byte("1234567890123456789012345678901234567890123456789012345678901234")
)

var seeds = map[v1alpha1.Algorithm][]byte{
	v1alpha1.AlgorithmSHA1:   seed20,
	v1alpha1.AlgorithmSHA256: seed32,
	v1alpha1.AlgorithmSHA512: seed64,
}

// rfc4226 holds the HOTP values of RFC 4226 Appendix D, indexed by counter.
var rfc4226 = []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}

// rfc6238 holds RFC 6238 Appendix B (X = 30, T0 = 0, 8 digits).
var rfc6238 = []struct {
	unix                 int64
	sha1, sha256, sha512 string
	sha1SixDigits        string
}{
	{59, "94287082", "46119246", "90693936", "287082"},
	{1111111109, "07081804", "68084774", "25091201", "081804"},
	{1111111111, "14050471", "67062674", "99943326", "050471"},
	{1234567890, "89005924", "91819424", "93441116", "005924"},
	{2000000000, "69279037", "90698825", "38618901", "279037"},
	{20000000000, "65353130", "77737706", "47863826", "353130"},
}

type vector struct {
	name   string
	alg    v1alpha1.Algorithm
	digits int32
	unix   int64
	want   string
}

func rfc6238Vectors() []vector {
	var vs []vector
	for _, r := range rfc6238 {
		for _, v := range []vector{
			{"SHA1", v1alpha1.AlgorithmSHA1, 8, r.unix, r.sha1},
			{"SHA256", v1alpha1.AlgorithmSHA256, 8, r.unix, r.sha256},
			{"SHA512", v1alpha1.AlgorithmSHA512, 8, r.unix, r.sha512},
			{"SHA1 six digits", v1alpha1.AlgorithmSHA1, 6, r.unix, r.sha1SixDigits},
		} {
			v.name = v.name + " at " + time.Unix(r.unix, 0).UTC().Format(time.DateTime)
			vs = append(vs, v)
		}
	}
	return vs
}

func totpParams(alg v1alpha1.Algorithm, digits int32) Params {
	return Params{Method: v1alpha1.MethodTOTP, Algorithm: alg, Digits: digits, PeriodSeconds: 30}
}

func hotpParams() Params {
	return Params{Method: v1alpha1.MethodHOTP, Algorithm: v1alpha1.AlgorithmSHA1, Digits: 6}
}

func mustCode(t testing.TB, secret []byte, alg v1alpha1.Algorithm, digits int32, counter int64) string {
	t.Helper()
	c, err := Code(secret, alg, digits, uint64(counter))
	if err != nil {
		t.Fatalf("Code: %v", err)
	}
	return c
}

func TestCodeMatchesRFC4226Vectors(t *testing.T) {
	for counter, want := range rfc4226 {
		if got := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, int64(counter)); got != want {
			t.Errorf("counter %d: got %s, want %s", counter, got, want)
		}
	}
}

func TestCodeMatchesRFC6238Vectors(t *testing.T) {
	for _, v := range rfc6238Vectors() {
		t.Run(v.name, func(t *testing.T) {
			if got := mustCode(t, seeds[v.alg], v.alg, v.digits, v.unix/30); got != v.want {
				t.Errorf("got %s, want %s", got, v.want)
			}
		})
	}
}

func TestCheckTOTPAcceptsRFC6238Vectors(t *testing.T) {
	for _, v := range rfc6238Vectors() {
		t.Run(v.name, func(t *testing.T) {
			step, ok := CheckTOTP(seeds[v.alg], totpParams(v.alg, v.digits), v.want, time.Unix(v.unix, 0), 0, nil)
			if !ok || step != v.unix/30 {
				t.Errorf("got step %d, %v; want %d, true", step, ok, v.unix/30)
			}
		})
	}
}

func TestCheckHOTPAcceptsRFC4226Vectors(t *testing.T) {
	for counter, code := range rfc4226 {
		next, ok := CheckHOTP(seed20, hotpParams(), code, int64(counter), 0)
		if !ok || next != int64(counter)+1 {
			t.Errorf("counter %d: got %d, %v; want %d, true", counter, next, ok, counter+1)
		}
	}
}

func TestCodeRejectsInvalidInput(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		alg    v1alpha1.Algorithm
		digits int32
	}{
		{"unknown algorithm", seed20, "MD5", 6},
		{"empty algorithm", seed20, "", 6},
		{"five digits", seed20, v1alpha1.AlgorithmSHA1, 5},
		{"seven digits", seed20, v1alpha1.AlgorithmSHA1, 7},
		{"nine digits", seed20, v1alpha1.AlgorithmSHA1, 9},
		{"short secret", seed20[:15], v1alpha1.AlgorithmSHA1, 6},
		{"no secret", nil, v1alpha1.AlgorithmSHA1, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := Code(tt.secret, tt.alg, tt.digits, 0); err == nil {
				t.Errorf("got %q, want an error", c)
			}
		})
	}
}

func TestCheckTOTPWindowEdges(t *testing.T) {
	const period = 30
	now := time.Unix(1234567890, 0)
	cur := now.Unix() / period
	for _, skew := range []int32{0, 1, 3, MaxSkewSteps} {
		for _, tt := range []struct {
			name   string
			offset int64
			accept bool
		}{
			{"one step before the window", -int64(skew) - 1, false},
			{"first step of the window", -int64(skew), true},
			{"current step", 0, true},
			{"last step of the window", int64(skew), true},
			{"one step after the window", int64(skew) + 1, false},
		} {
			t.Run(fmt.Sprintf("skew %d/%s", skew, tt.name), func(t *testing.T) {
				code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, cur+tt.offset)
				step, ok := CheckTOTP(seed20, totpParams(v1alpha1.AlgorithmSHA1, 6), code, now, skew, nil)
				if ok != tt.accept || (ok && step != cur+tt.offset) {
					t.Errorf("got step %d, %v; want step %d, %v", step, ok, cur+tt.offset, tt.accept)
				}
			})
		}
	}
}

func TestCheckTOTPPeriodBoundaries(t *testing.T) {
	p := totpParams(v1alpha1.AlgorithmSHA1, 6)
	code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, 100)
	for _, tt := range []struct {
		name   string
		unix   int64
		accept bool
	}{
		{"last second of the previous step", 100*30 - 1, false},
		{"first second of the step", 100 * 30, true},
		{"last second of the step", 100*30 + 29, true},
		{"first second of the next step", 101 * 30, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := CheckTOTP(seed20, p, code, time.Unix(tt.unix, 0), 0, nil); ok != tt.accept {
				t.Errorf("got %v, want %v", ok, tt.accept)
			}
		})
	}
}

// The steps CheckTOTP refuses for replay, and which of those UsedTOTP reports as a replay (refused without
// counting) rather than a wrong code.
func TestCheckTOTPReplayProtection(t *testing.T) {
	now := time.Unix(1234567890, 0)
	cur := now.Unix() / 30
	p := totpParams(v1alpha1.AlgorithmSHA1, 6)
	ptr := func(v int64) *int64 { return &v }
	tests := []struct {
		name      string
		codeStep  int64
		lastUsed  *int64
		wantStep  int64
		wantValid bool
		wantUsed  bool
	}{
		{"first use of the current step", cur, nil, cur, true, false},
		{"current step again after it was used", cur, ptr(cur), 0, false, true},
		{"previous step after the current one was used", cur - 1, ptr(cur), 0, false, true},
		{"previous step after the next one was used", cur - 1, ptr(cur + 1), 0, false, true},
		{"next step after the current one was used", cur + 1, ptr(cur), cur + 1, true, false},
		{"current step after the previous one was used", cur, ptr(cur - 1), cur, true, false},
		{"previous step when an older step was used", cur - 1, ptr(cur - 5), cur - 1, true, false},
		{"any step after the last step of the window was used", cur + 1, ptr(cur + 1), 0, false, true},
		{"a negative last used step", cur, ptr(-1), cur, true, false},
		{"the largest last used step", cur, ptr(math.MaxInt64), 0, false, true},
		{"a used step that left the window", cur - 2, ptr(cur), 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, tt.codeStep)
			step, ok := CheckTOTP(seed20, p, code, now, 1, tt.lastUsed)
			if ok != tt.wantValid || step != tt.wantStep {
				t.Errorf("got step %d, %v; want %d, %v", step, ok, tt.wantStep, tt.wantValid)
			}
			if used := UsedTOTP(seed20, p, code, now, 1, tt.lastUsed); !ok && used != tt.wantUsed {
				t.Errorf("used: got %v, want %v", used, tt.wantUsed)
			}
		})
	}
	wrong := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, cur+7)
	if UsedTOTP(seed20, p, wrong, now, 1, ptr(cur+1)) || UsedTOTP(seed20, p, "12345", now, 1, ptr(cur+1)) {
		t.Error("a wrong or malformed code is reported as used")
	}
}

// UsedHOTP looks back as far as CheckHOTP looks ahead, plus the counter just consumed.
func TestUsedHOTPWindow(t *testing.T) {
	p := hotpParams()
	const counter, lookAhead = 5, 2
	for c, want := range map[int64]bool{1: false, 2: true, 3: true, 4: true, 6: false} {
		code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, c)
		if _, ok := CheckHOTP(seed20, p, code, counter, lookAhead); ok && c < counter {
			t.Errorf("counter %d accepted after %d", c, counter)
		}
		if got := UsedHOTP(seed20, p, code, counter, lookAhead); got != want {
			t.Errorf("code of counter %d used at %d: got %v, want %v", c, counter, got, want)
		}
	}
	if UsedHOTP(seed20, p, mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, 0), 0, lookAhead) {
		t.Error("nothing is used before the first code")
	}
}

func TestCheckTOTPUsedCodeIsRejectedLater(t *testing.T) {
	p := totpParams(v1alpha1.AlgorithmSHA1, 6)
	now := time.Unix(1234567890, 0)
	code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, now.Unix()/30)
	step, ok := CheckTOTP(seed20, p, code, now, 1, nil)
	if !ok {
		t.Fatal("first use rejected")
	}
	for _, later := range []time.Duration{0, 10 * time.Second, 30 * time.Second} {
		if _, ok := CheckTOTP(seed20, p, code, now.Add(later), 1, &step); ok {
			t.Errorf("replay %v later accepted", later)
		}
	}
}

func TestCheckTOTPRejectsInvalidInput(t *testing.T) {
	now := time.Unix(1234567890, 0)
	good := totpParams(v1alpha1.AlgorithmSHA1, 6)
	code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, now.Unix()/30)
	if _, ok := CheckTOTP(seed20, good, code, now, 1, nil); !ok {
		t.Fatal("valid code rejected")
	}
	with := func(f func(*Params)) Params { p := good; f(&p); return p }
	tests := []struct {
		name   string
		secret []byte
		p      Params
		code   string
		now    time.Time
		skew   int32
	}{
		{"HOTP params", seed20, with(func(p *Params) { p.Method = v1alpha1.MethodHOTP }), code, now, 1},
		{"no method", seed20, with(func(p *Params) { p.Method = "" }), code, now, 1},
		{"unknown algorithm", seed20, with(func(p *Params) { p.Algorithm = "MD5" }), code, now, 1},
		{"zero period", seed20, with(func(p *Params) { p.PeriodSeconds = 0 }), code, now, 1},
		{"negative period", seed20, with(func(p *Params) { p.PeriodSeconds = -30 }), code, now, 1},
		{"seven digits expected of a six digit code", seed20, with(func(p *Params) { p.Digits = 7 }), code, now, 1},
		{"short secret", seed20[:15], good, code, now, 1},
		{"empty secret", nil, good, code, now, 1},
		{"negative skew", seed20, good, code, now, -1},
		{"skew above the maximum", seed20, good, code, now, MaxSkewSteps + 1},
		{"time before 1970", seed20, good, code, time.Unix(-30, 0), 1},
		{"code with a letter", seed20, good, code[:5] + "a", now, 1},
		{"empty code", seed20, good, "", now, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if step, ok := CheckTOTP(tt.secret, tt.p, tt.code, tt.now, tt.skew, nil); ok || step != 0 {
				t.Errorf("got step %d, %v; want 0, false", step, ok)
			}
		})
	}
}

func TestCheckTOTPAcceptsSpacedCode(t *testing.T) {
	now := time.Unix(1234567890, 0)
	code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, now.Unix()/30)
	if _, ok := CheckTOTP(seed20, totpParams(v1alpha1.AlgorithmSHA1, 6), code[:3]+" "+code[3:], now, 0, nil); !ok {
		t.Error("code with a space rejected")
	}
}

func TestCheckHOTPLookAhead(t *testing.T) {
	tests := []struct {
		name      string
		codeAt    int64
		counter   int64
		lookAhead int32
		wantNext  int64
		wantValid bool
	}{
		{"code at the counter", 5, 5, 4, 6, true},
		{"code at the end of the look-ahead", 9, 5, 4, 10, true},
		{"code one past the look-ahead", 10, 5, 4, 0, false},
		{"code below the counter", 4, 5, 4, 0, false},
		{"code at the counter without look-ahead", 5, 5, 0, 6, true},
		{"next code without look-ahead", 6, 5, 0, 0, false},
		{"code at the maximum look-ahead", 100, 0, MaxLookAhead, 101, true},
		{"look-ahead above the maximum", 0, 0, MaxLookAhead + 1, 0, false},
		{"negative look-ahead", 0, 0, -1, 0, false},
		{"negative counter", 0, -1, 4, 0, false},
		{"counter with no next value", 0, math.MaxInt64, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := mustCode(t, seed20, v1alpha1.AlgorithmSHA1, 6, tt.codeAt)
			next, ok := CheckHOTP(seed20, hotpParams(), code, tt.counter, tt.lookAhead)
			if ok != tt.wantValid || next != tt.wantNext {
				t.Errorf("got %d, %v; want %d, %v", next, ok, tt.wantNext, tt.wantValid)
			}
		})
	}
}

func TestCheckHOTPRejectsTOTPParams(t *testing.T) {
	if _, ok := CheckHOTP(seed20, totpParams(v1alpha1.AlgorithmSHA1, 6), rfc4226[0], 0, 0); ok {
		t.Error("TOTP params accepted by CheckHOTP")
	}
}

func TestNormalizeCode(t *testing.T) {
	tests := []struct {
		name   string
		code   string
		digits int32
		want   string
		ok     bool
	}{
		{"six digits", "123456", 6, "123456", true},
		{"eight digits", "12345678", 8, "12345678", true},
		{"leading zeros", "000001", 6, "000001", true},
		{"space in the middle", "123 456", 6, "123456", true},
		{"spaces around", " 123456 ", 6, "123456", true},
		{"spaces everywhere", "1 2 3 4 5 6", 6, "123456", true},
		{"a letter", "12345a", 6, "", false},
		{"too short", "12345", 6, "", false},
		{"too long", "1234567", 6, "", false},
		{"six digits when eight are expected", "123456", 8, "", false},
		{"empty", "", 6, "", false},
		{"only spaces", "      ", 6, "", false},
		{"Arabic-Indic digits", "١٢٣٤٥٦", 6, "", false},
		{"fullwidth digits", "１２３４５６", 6, "", false},
		{"a tab", "123\t456", 6, "", false},
		{"a sign", "+12345", 6, "", false},
		{"unsupported length", "12345", 5, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NormalizeCode(tt.code, tt.digits)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"TOTP", totpParams(v1alpha1.AlgorithmSHA512, 8), true},
		{"HOTP without period", hotpParams(), true},
		{"TOTP without period", Params{Method: v1alpha1.MethodTOTP, Algorithm: v1alpha1.AlgorithmSHA1, Digits: 6}, false},
		{"no method", Params{Algorithm: v1alpha1.AlgorithmSHA1, Digits: 6, PeriodSeconds: 30}, false},
		{"no algorithm", Params{Method: v1alpha1.MethodHOTP, Digits: 6}, false},
		{"no digits", Params{Method: v1alpha1.MethodHOTP, Algorithm: v1alpha1.AlgorithmSHA1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); (err == nil) != tt.ok {
				t.Errorf("got %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// RFC 4226 Appendix D's codes 0..9 of its 20-byte key, at the edges of the resync window.
func TestResyncHOTPAtTheWindowEdges(t *testing.T) {
	codes := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	p := hotpParams()
	for _, tt := range []struct {
		name     string
		counter  int64
		window   int32
		first    int // the pair is codes[first], codes[first+1]
		want     Match
		wantNext int64
	}{
		{"the last pair the window holds", 0, 6, 5, Fresh, 7},
		{"one past the window", 0, 5, 5, NoMatch, 0},
		{"at the stored counter", 3, 1, 3, Fresh, 5},
		{"a window of one, one further", 3, 1, 4, NoMatch, 0},
		{"a pair used before", 7, 5, 2, Replayed, 0},
		{"a pair just used", 7, 5, 5, Replayed, 0},
		{"a used code then an unused one", 7, 5, 6, NoMatch, 0},
		{"a used pair beyond the look-back", 8, 2, 2, NoMatch, 0},
		{"codes out of order", 0, 10, -1, NoMatch, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := codes[2], codes[1]
			if tt.first >= 0 {
				a, b = codes[tt.first], codes[tt.first+1]
			}
			next, m := ResyncHOTP(seed20, p, a, b, tt.counter, tt.window)
			if m != tt.want || next != tt.wantNext {
				t.Errorf("got %d, %v; want %d, %v", next, m, tt.wantNext, tt.want)
			}
		})
	}
	for _, w := range []int32{0, -1, MaxResyncWindow + 1} {
		if _, m := ResyncHOTP(seed20, p, codes[0], codes[1], 0, w); m != NoMatch {
			t.Errorf("window %d searched", w)
		}
	}
	if _, m := ResyncHOTP(seed20, totpParams(v1alpha1.AlgorithmSHA1, 6), codes[0], codes[1], 0, 5); m != NoMatch {
		t.Error("TOTP parameters resynchronised")
	}
}
