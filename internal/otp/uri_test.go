package otp

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"image/png"
	"net/url"
	"strconv"
	"strings"
	"testing"

	potp "github.com/pquerna/otp"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/qrscan"
)

func TestProvisioningURIRoundTrip(t *testing.T) {
	secret := seed32
	tests := []struct {
		name    string
		p       Params
		issuer  string
		account string
		counter int64
	}{
		{"TOTP with defaults", totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme", "alice", 0},
		{"TOTP with SHA512, 8 digits and a 60 second period", Params{
			Method: v1alpha1.MethodTOTP, Algorithm: v1alpha1.AlgorithmSHA512, Digits: 8, PeriodSeconds: 60,
		}, "Acme", "alice@example.com", 0},
		{"HOTP at counter 0", hotpParams(), "Acme", "bob", 0},
		{"HOTP at counter 42 with SHA256", Params{
			Method: v1alpha1.MethodHOTP, Algorithm: v1alpha1.AlgorithmSHA256, Digits: 8,
		}, "Acme", "bob", 42},
		{"account with spaces", totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme Corp", "Alice Smith", 0},
		{"account with @ and :", totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme", "alice@example.com:admin", 0},
		{"account with URI delimiters", hotpParams(), "Acme", "a/b?c#d&e=f%g+h", 7},
		{"account with non-ASCII letters", totpParams(v1alpha1.AlgorithmSHA1, 6), "Äcme", "jürgen", 0},
		{"issuer with an ampersand", totpParams(v1alpha1.AlgorithmSHA1, 6), "Smith & Co", "alice", 0},
		{"issuer that tries to add a secret", totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme&secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alice", 0},
		{"issuer with query delimiters", hotpParams(), "A+B=C#D?E%F/G", "alice", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uri, err := ProvisioningURI(tt.p, tt.issuer, tt.account, secret, tt.counter)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(uri)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			check := func(what, got, want string) {
				t.Helper()
				if got != want {
					t.Errorf("%s: got %q, want %q", what, got, want)
				}
			}
			check("scheme", u.Scheme, "otpauth")
			check("type", u.Host, strings.ToLower(string(tt.p.Method)))
			check("label", strings.TrimPrefix(u.Path, "/"), tt.issuer+":"+tt.account)
			check("issuer", q.Get("issuer"), tt.issuer)
			check("digits", q.Get("digits"), map[int32]string{6: "6", 8: "8"}[tt.p.Digits])
			check("algorithm", q.Get("algorithm"), string(tt.p.Algorithm))
			if tt.p.Method == v1alpha1.MethodTOTP {
				check("period", q.Get("period"), map[int32]string{30: "30", 60: "60"}[tt.p.PeriodSeconds])
				check("counter", q.Get("counter"), "")
			} else {
				check("period", q.Get("period"), "")
				check("counter", q.Get("counter"), strconv.FormatInt(tt.counter, 10))
			}
			if got, err := DecodeSecret(q.Get("secret")); err != nil || !bytes.Equal(got, secret) || len(q["secret"]) != 1 {
				t.Errorf("secret does not decode to the key, or is given %d times: %v", len(q["secret"]), err)
			}
			// What authenticator apps read, through the library the project uses for them.
			key, err := potp.NewKeyFromURL(uri)
			if err != nil || key.Issuer() != tt.issuer || key.AccountName() != tt.account || key.Secret() != EncodeSecret(secret) {
				t.Errorf("pquerna reads issuer %q, account %q: %v", key.Issuer(), key.AccountName(), err)
			}
		})
	}
}

// FuzzProvisioningURI: whatever the issuer and account, the URI holds exactly one secret, the key's; the
// issuer round-trips; and the query holds only the parameters the builder sets, so the account never
// reaches it. Longer run: go test -run '^$' -fuzz FuzzProvisioningURI -fuzztime 1m ./internal/otp
func FuzzProvisioningURI(f *testing.F) {
	f.Add("Smith & Co", "alice")
	f.Add("Acme&secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "bob")
	f.Add("Acme", "a?secret=AAAA&issuer=x#y")
	f.Add("A+B%20C", "名前 ")
	f.Fuzz(func(t *testing.T, issuer, account string) {
		uri, err := ProvisioningURI(totpParams(v1alpha1.AlgorithmSHA1, 6), issuer, account, seed20, 0)
		if err != nil {
			return
		}
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("%q does not parse: %v", uri, err)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			t.Fatalf("%q: query does not parse: %v", uri, err)
		}
		if len(q["secret"]) != 1 || q.Get("secret") != EncodeSecret(seed20) {
			t.Fatalf("%q: secrets %q", uri, q["secret"])
		}
		if len(q["issuer"]) != 1 || q.Get("issuer") != issuer {
			t.Fatalf("%q: issuer %q, want %q", uri, q["issuer"], issuer)
		}
		if len(q) != 5 || len(q["algorithm"])+len(q["digits"])+len(q["period"]) != 3 {
			t.Fatalf("%q: the query holds %v", uri, q)
		}
		if u.Path != "/"+issuer+":"+account || u.Fragment != "" {
			t.Fatalf("%q: label %q, fragment %q", uri, u.Path, u.Fragment)
		}
	})
}

func TestProvisioningURIRejectsInvalidInput(t *testing.T) {
	p := totpParams(v1alpha1.AlgorithmSHA1, 6)
	tests := []struct {
		name            string
		p               Params
		issuer, account string
		secret          []byte
		counter         int64
	}{
		{"invalid params", Params{Method: v1alpha1.MethodTOTP}, "Acme", "alice", seed20, 0},
		{"empty issuer", p, "", "alice", seed20, 0},
		{"issuer with a colon", p, "Ac:me", "alice", seed20, 0},
		{"empty account", p, "Acme", "", seed20, 0},
		{"no secret", p, "Acme", "alice", nil, 0},
		{"short secret", p, "Acme", "alice", seed20[:15], 0},
		{"negative HOTP counter", hotpParams(), "Acme", "alice", seed20, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if uri, err := ProvisioningURI(tt.p, tt.issuer, tt.account, tt.secret, tt.counter); err == nil {
				t.Errorf("got %q, want an error", uri)
			}
		})
	}
}

func TestQRPNGHasTheRequestedSize(t *testing.T) {
	uri, err := ProvisioningURI(totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme", "alice@example.com", seed20, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{128, 200, 256, 512} {
		data, err := QRPNG(uri, size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		b := img.Bounds()
		if b.Dx() != size || b.Dy() != size {
			t.Errorf("size %d: got %dx%d", size, b.Dx(), b.Dy())
		}
		dark := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
					dark++
				}
			}
		}
		if dark == 0 || dark == size*size {
			t.Errorf("size %d: %d of %d pixels dark, want a black-and-white code", size, dark, size*size)
		}
	}
}

// TestQRPNGDrawsWhatPquernaDraws: the direct rendering is pixel for pixel the image pquerna/otp's
// Key.Image gives, in two colours, at sizes that scale by 1 to 12 and leave margins of every parity.
func TestQRPNGDrawsWhatPquernaDraws(t *testing.T) {
	short, err := ProvisioningURI(totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme", "alice@example.com", seed20, 0)
	if err != nil {
		t.Fatal(err)
	}
	long, err := ProvisioningURI(Params{Method: v1alpha1.MethodHOTP, Algorithm: v1alpha1.AlgorithmSHA512, Digits: 8},
		"A very long issuer name",
		strings.Repeat("someone", 12)+"@example.com", seed64, 12345)
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{short, long} {
		for _, size := range []int{57, 64, 100, 128, 200, 256, 301, 512} {
			key, err := potp.NewKeyFromURL(uri)
			if err != nil {
				t.Fatal(err)
			}
			want, wantErr := key.Image(size, size)
			data, err := QRPNG(uri, size)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("size %d: error %v, pquerna's %v", size, err, wantErr)
			}
			if err != nil {
				continue // too small for this code, for both
			}
			got, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if got.Bounds() != want.Bounds() {
				t.Fatalf("size %d: bounds %v, pquerna %v", size, got.Bounds(), want.Bounds())
			}
			for y := range size {
				for x := range size {
					g, _, _, _ := got.At(x, y).RGBA()
					w, _, _, _ := want.At(x, y).RGBA()
					if (g < 0x8000) != (w < 0x8000) {
						t.Fatalf("size %d: pixel (%d,%d) differs from pquerna's", size, x, y)
					}
				}
			}
		}
	}
}

func TestQRPNGRejectsInvalidInput(t *testing.T) {
	uri, err := ProvisioningURI(totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme", "alice", seed20, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		uri  string
		size int
	}{
		{"zero size", uri, 0},
		{"size smaller than the code", uri, 10},
		{"unparsable URI", "otpauth://totp/%zz", 256},
		{"URI too long for a QR code", uri + strings.Repeat("x", 5000), 256},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := QRPNG(tt.uri, tt.size); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestErrorsNeverContainTheSecret provokes every error path that sees key material and checks that no
// message quotes the key, in base32 or raw.
func TestErrorsNeverContainTheSecret(t *testing.T) {
	secret := seed32
	b32 := EncodeSecret(secret)
	uri, err := ProvisioningURI(totpParams(v1alpha1.AlgorithmSHA1, 6), "Acme", "alice", secret, 0)
	if err != nil {
		t.Fatal(err)
	}
	collect := func(_ any, err error) error { return err }
	errs := map[string]error{
		"URI with invalid params":     collect(ProvisioningURI(Params{}, "Acme", "alice", secret, 0)),
		"URI with an invalid issuer":  collect(ProvisioningURI(hotpParams(), "A:B", "alice", secret, 0)),
		"URI without account":         collect(ProvisioningURI(hotpParams(), "Acme", "", secret, 0)),
		"URI with a negative counter": collect(ProvisioningURI(hotpParams(), "Acme", "alice", secret, -1)),
		"QR too small":                collect(QRPNG(uri, 10)),
		"QR of an unparsable URI":     collect(QRPNG(strings.Replace(uri, "Acme:", "Acme%zz:", 1), 256)),
		"QR of a URI too long":        collect(QRPNG(uri+strings.Repeat("x", 5000), 256)),
		"QR of size zero":             collect(QRPNG(uri, 0)),
		"decoding a corrupt secret":   collect(DecodeSecret(b32 + "1")),
		"decoding a truncated secret": collect(DecodeSecret(b32[:len(b32)-1])),
		"code with a short secret":    collect(Code(secret[:15], v1alpha1.AlgorithmSHA1, 6, 0)),
		"code with a bad algorithm":   collect(Code(secret, "MD5", 6, 0)),
	}
	for name, err := range errs {
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		msg := err.Error()
		if strings.Contains(strings.ToUpper(msg), b32[:16]) || strings.Contains(msg, string(secret[:16])) {
			t.Errorf("%s: error quotes the secret: %s", name, msg)
		}
	}
}

// What QRText prints scans back into the very URI, as a phone reading the terminal would.
func TestQRTextScansBackIntoTheURI(t *testing.T) {
	uri, err := ProvisioningURI(Params{Method: "TOTP", Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30}, "webapp",
		"alice@example.com", []byte("12345678901234567890"), 0)
	if err != nil {
		t.Fatal(err)
	}
	text, err := QRText(uri)
	if err != nil {
		t.Fatal(err)
	}
	got, err := qrscan.Terminal("Scan this with your authenticator app:\n\n" + text + "\nor type the key.")
	if err != nil || got != uri {
		t.Fatalf("scanned %q, %v; want %q", got, err, uri)
	}
	// Every code scans, not most: random keys give every pattern a chance (a scanner that hunted for finder
	// patterns misread one code in a few dozen at the terminal's scale).
	for i := range 300 {
		key := make([]byte, 20)
		_, _ = rand.Read(key)
		uri, err := ProvisioningURI(Params{Method: "TOTP", Algorithm: "SHA1", Digits: 6, PeriodSeconds: 30}, "webapp",
			fmt.Sprintf("user-%d", i), key, 0)
		if err != nil {
			t.Fatal(err)
		}
		text, err := QRText(uri)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := qrscan.Terminal(text); err != nil || got != uri {
			t.Fatalf("key %d: scanned %q, %v; want %q", i, got, err, uri)
		}
	}
	if _, err := QRText("otpauth://totp/%zz"); err == nil {
		t.Fatal("QRText rendered an invalid URI")
	}
}
