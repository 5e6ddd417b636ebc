package render

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// rfcKey is the RFC 4226 test key: golden files must not hold anything that looks like a real key.
var rfcKey = []byte("12345678901234567890")

func policy() *v1alpha1.TwoFactorPolicy {
	return &v1alpha1.TwoFactorPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "webapp", Namespace: "shop", UID: "policy-uid"},
		Spec:       v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}},
	}
}

func enrollment() *v1alpha1.UserEnrollment {
	return &v1alpha1.UserEnrollment{
		ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "shop", UID: "enrollment-uid",
			Labels: map[string]string{"argocd.argoproj.io/instance": "shop"}},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "alice@example.com"},
	}
}

func golden(t *testing.T, name string, obj any) {
	t.Helper()
	got, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/render -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (go test ./internal/render -update rewrites it):\n%s", name, got)
	}
}

func TestVerifierConfigMapIsDeterministic(t *testing.T) {
	a, err := VerifierConfigMap(policy())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := VerifierConfigMap(policy())
	if a.Data[ConfigMapKeyPolicy] != b.Data[ConfigMapKeyPolicy] || a.Annotations[v1alpha1.AnnotationConfigHash] != b.Annotations[v1alpha1.AnnotationConfigHash] {
		t.Fatal("two renderings of one policy differ")
	}
	golden(t, "configmap.yaml", a)

	p := policy()
	p.Spec.Lockout = &v1alpha1.LockoutSettings{MaxFailures: 5}
	c, _ := VerifierConfigMap(p)
	if c.Annotations[v1alpha1.AnnotationConfigHash] == a.Annotations[v1alpha1.AnnotationConfigHash] {
		t.Error("the content hash did not change with the content")
	}
	back, err := ParseVerifierConfigMap(c)
	if err != nil || back.Lockout.MaxFailures != 5 || back.Issuer != "webapp" {
		t.Errorf("ParseVerifierConfigMap = %+v, %v", back, err)
	}
}

func TestOTPSecretHoldsKeySnapshotURIAndQR(t *testing.T) {
	params := ParamsFor(policy().Resolve(), v1alpha1.MethodTOTP)
	s, err := OTPSecret(enrollment(), params, "webapp", rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, copied := s.Labels["argocd.argoproj.io/instance"]; copied {
		t.Error("the enrollment's GitOps tracking label was copied onto its Secret")
	}
	golden(t, "secret-totp.yaml", s)

	gotParams, key, err := ParseOTPSecret(s)
	if err != nil || gotParams != params || string(key) != string(rfcKey) {
		t.Fatalf("ParseOTPSecret = %+v, key ok %v, %v", gotParams, string(key) == string(rfcKey), err)
	}

	hotp := ParamsFor(policy().Resolve(), v1alpha1.MethodHOTP)
	h, err := OTPSecret(enrollment(), hotp, "webapp", rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, has := h.Data[SecretKeyPeriod]; has {
		t.Error("an HOTP Secret has a period")
	}
	if !strings.Contains(string(h.Data[SecretKeyURI]), "counter=0") {
		t.Error("the HOTP provisioning URI has no counter")
	}
	if p, _, err := ParseOTPSecret(h); err != nil || p != hotp {
		t.Errorf("HOTP round trip: %+v, %v", p, err)
	}
}

// A user of 200 four-byte characters is within the CRD's 256, but its percent-encoded URI does not fit in a
// QR code: the Secret is provisioned without one (the manager used to fail for ever, and self-enrollment
// answered 503).
func TestAURITooLongForAQRCodeIsProvisionedWithoutOne(t *testing.T) {
	e := enrollment()
	e.Spec.User = strings.Repeat("😀", 200)
	s, err := OTPSecret(e, ParamsFor(policy().Resolve(), v1alpha1.MethodTOTP), "webapp", rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	if HasQRCode(s) || len(s.Data[SecretKeyURI]) < 2400 {
		t.Fatalf("QR code %d bytes, URI %d bytes", len(s.Data[SecretKeyQR]), len(s.Data[SecretKeyURI]))
	}
	if p, k, err := ParseOTPSecret(s); err != nil || string(k) != string(rfcKey) || p.Method != v1alpha1.MethodTOTP {
		t.Fatalf("the key does not read back: %v", err)
	}
	if good, err := OTPSecret(enrollment(), ParamsFor(policy().Resolve(), v1alpha1.MethodTOTP), "webapp", rfcKey); err != nil || !HasQRCode(good) {
		t.Fatalf("an ordinary user got no QR code: %v", err)
	}
}

func TestParseOTPSecretNamesTheBadFieldNeverTheKey(t *testing.T) {
	good, err := OTPSecret(enrollment(), ParamsFor(policy().Resolve(), v1alpha1.MethodTOTP), "webapp", rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ field, bad string }{
		{SecretKeyMethod, "SMS"},
		{SecretKeyAlgorithm, "MD5"},
		{SecretKeyDigits, "7"},
		{SecretKeyPeriod, "0"},
		{SecretKeySecret, "not base32!"},
		// Parsed as int and converted, these would wrap to 30 and 6.
		{SecretKeyPeriod, "4294967326"},
		{SecretKeyDigits, "4294967302"},
		{SecretKeyPeriod, "-4294967266"},
	} {
		field, bad := tt.field, tt.bad
		s := good.DeepCopy()
		s.Data[field] = []byte(bad)
		_, _, err := ParseOTPSecret(s)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s=%q: error %v does not name the field", field, bad, err)
		}
		if err != nil && strings.Contains(err.Error(), otp.EncodeSecret(rfcKey)) {
			t.Errorf("%s: the error reveals the key", field)
		}
		delete(s.Data, field)
		if _, _, err := ParseOTPSecret(s); err == nil {
			t.Errorf("missing %s accepted", field)
		}
	}
	if _, err := ParseVerifierConfigMap(&corev1.ConfigMap{}); err == nil {
		t.Error("an empty ConfigMap parsed")
	}
}

// Whatever a Secret holds, ParseOTPSecret either refuses it, naming no key, or returns parameters otp accepts
// and a key of at least otp.MinSecretBytes. Longer run:
// go test -run '^$' -fuzz FuzzParseOTPSecret -fuzztime 1m ./internal/render
func FuzzParseOTPSecret(f *testing.F) {
	f.Add("TOTP", "SHA1", "6", "30", otp.EncodeSecret(rfcKey))
	f.Add("HOTP", "SHA512", "8", "", "gezdgnbvgy3tqojqgezdgnbvgy3tqojq")
	f.Add("TOTP", "SHA1", "6", "4294967326", otp.EncodeSecret(rfcKey))
	f.Add("TOTP", "SHA256", "+6", "0x1e", "GEZDGNBV GY3TQOJQ")
	f.Fuzz(func(t *testing.T, method, algorithm, digits, period, secret string) {
		s := &corev1.Secret{Data: map[string][]byte{SecretKeyMethod: []byte(method), SecretKeyAlgorithm: []byte(algorithm),
			SecretKeyDigits: []byte(digits), SecretKeyPeriod: []byte(period), SecretKeySecret: []byte(secret)}}
		p, key, err := ParseOTPSecret(s)
		if err != nil {
			if k, derr := otp.DecodeSecret(secret); derr == nil && len(k) >= otp.MinSecretBytes &&
				strings.Contains(err.Error(), otp.EncodeSecret(k)) {
				t.Fatalf("the error %q holds the key", err)
			}
			return
		}
		if p.Validate() != nil || len(key) < otp.MinSecretBytes || strconv.Itoa(int(p.Digits)) != strings.TrimLeft(digits, "+0") {
			t.Fatalf("accepted %+v with a %d-byte key from digits %q", p, len(key), digits)
		}
	})
}

// Whatever the ConfigMap holds, ParseVerifierConfigMap either refuses it or returns a policy the CRD allows,
// which renders back to a ConfigMap that parses to the same policy. Longer run:
// go test -run '^$' -fuzz FuzzParseVerifierConfigMap -fuzztime 1m ./internal/render
func FuzzParseVerifierConfigMap(f *testing.F) {
	cm, err := VerifierConfigMap(policy())
	if err != nil {
		f.Fatal(err)
	}
	good := cm.Data[ConfigMapKeyPolicy]
	f.Add(good)
	f.Add(strings.Replace(good, `"mode":"Enforced"`, `"mode":"Enforced","Mode":"Disabled"`, 1))
	f.Add(strings.Replace(good, `"maxFailures":3`, `"maxFailures":3,"maxFailures":100`, 1))
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, raw string) {
		in := &corev1.ConfigMap{Data: map[string]string{ConfigMapKeyPolicy: raw}}
		p, err := ParseVerifierConfigMap(in)
		if err != nil {
			return
		}
		if err := ValidateResolved(p); err != nil {
			t.Fatalf("loaded a policy the CRD refuses: %v", err)
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseVerifierConfigMap(&corev1.ConfigMap{Data: map[string]string{ConfigMapKeyPolicy: string(again)}})
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("%s reads as %+v, which does not read back (%v)", raw, p, err)
		}
	})
}
