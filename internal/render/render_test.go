package render

import (
	"flag"
	"os"
	"path/filepath"
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
	lean := s.DeepCopy()
	DropEnrollmentMaterial(lean)
	if len(lean.Data[SecretKeyURI]) != 0 || len(lean.Data[SecretKeyQR]) != 0 {
		t.Error("DropEnrollmentMaterial kept the URI or the QR code")
	}
	if p, k, err := ParseOTPSecret(lean); err != nil || p != params || string(k) != string(rfcKey) {
		t.Errorf("ParseOTPSecret without enrollment material = %+v, key ok %v, %v", p, string(k) == string(rfcKey), err)
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

func TestParseOTPSecretNamesTheBadFieldNeverTheKey(t *testing.T) {
	good, err := OTPSecret(enrollment(), ParamsFor(policy().Resolve(), v1alpha1.MethodTOTP), "webapp", rfcKey)
	if err != nil {
		t.Fatal(err)
	}
	for field, bad := range map[string]string{
		SecretKeyMethod:    "SMS",
		SecretKeyAlgorithm: "MD5",
		SecretKeyDigits:    "7",
		SecretKeyPeriod:    "0",
		SecretKeySecret:    "not base32!",
	} {
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
