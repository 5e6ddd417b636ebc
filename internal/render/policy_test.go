package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/otp"
)

// A policy at every bound the CRD allows renders into a ConfigMap that the verifier loads.
func TestEveryPolicyTheCRDAllowsLoads(t *testing.T) {
	most, least := policy(), policy()
	most.Spec = v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeOptional, Methods: []v1alpha1.Method{v1alpha1.MethodHOTP, v1alpha1.MethodTOTP},
		Issuer: strings.Repeat("i", maxIssuerLength), SecretBytes: maxSecretBytes,
		TOTP:    &v1alpha1.TOTPSettings{Algorithm: v1alpha1.AlgorithmSHA512, Digits: 8, PeriodSeconds: maxPeriodSeconds, SkewSteps: ptr.To[int32](otp.MaxSkewSteps)},
		HOTP:    &v1alpha1.HOTPSettings{Algorithm: v1alpha1.AlgorithmSHA256, Digits: 8, LookAhead: ptr.To[int32](otp.MaxLookAhead)},
		Lockout: &v1alpha1.LockoutSettings{MaxFailures: maxMaxFailures, ThrottleSeconds: ptr.To[int32](maxThrottleSeconds)}}
	least.Spec = v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeDisabled, SecretBytes: otp.MinSecretBytes,
		TOTP:    &v1alpha1.TOTPSettings{PeriodSeconds: minPeriodSeconds, SkewSteps: ptr.To[int32](0)},
		HOTP:    &v1alpha1.HOTPSettings{LookAhead: ptr.To[int32](0)},
		Lockout: &v1alpha1.LockoutSettings{MaxFailures: 1, ThrottleSeconds: ptr.To[int32](0)}}
	for _, p := range []*v1alpha1.TwoFactorPolicy{policy(), most, least} {
		cm, err := VerifierConfigMap(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseVerifierConfigMap(cm); err != nil {
			t.Errorf("%+v: %v", p.Spec, err)
		}
	}
}

// The verifier must never act on a policy it does not understand: nothing the CRD refuses loads, whatever
// wrote it into the ConfigMap.
func TestContentTheCRDWouldRefuseDoesNotLoad(t *testing.T) {
	cm, err := VerifierConfigMap(policy())
	if err != nil {
		t.Fatal(err)
	}
	good := cm.Data[ConfigMapKeyPolicy]
	edit := func(old, replacement string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("the rendered policy %s holds no %s", good, old)
		}
		return strings.Replace(good, old, replacement, 1)
	}
	for name, raw := range map[string]string{
		"empty object":            `{}`,
		"mode in lower case":      edit(`"mode":"Enforced"`, `"mode":"enforced"`),
		"no mode":                 edit(`"mode":"Enforced",`, ``),
		"unknown method":          edit(`"methods":["TOTP"]`, `"methods":["SMS"]`),
		"no method, Enforced":     edit(`"methods":["TOTP"]`, `"methods":[]`),
		"a method twice":          edit(`"methods":["TOTP"]`, `"methods":["TOTP","TOTP"]`),
		"unknown field":           edit(`"mode":"Enforced"`, `"mode":"Enforced","bypass":true`),
		"a second JSON value":     good + ` {}`,
		"seven digits":            edit(`"digits":6,"periodSeconds"`, `"digits":7,"periodSeconds"`),
		"period 0":                edit(`"periodSeconds":30`, `"periodSeconds":0`),
		"skew 11":                 edit(`"skewSteps":1`, `"skewSteps":11`),
		"look-ahead 101":          edit(`"lookAhead":4`, `"lookAhead":101`),
		"maxFailures 0":           edit(`"maxFailures":3`, `"maxFailures":0`),
		"negative throttle":       edit(`"throttleSeconds":0`, `"throttleSeconds":-1`),
		"unknown self-enrollment": edit(`"mode":"Open"`, `"mode":"Anyone"`),
		"no self-enrollment":      edit(`,"selfEnrollment":{"mode":"Open","pendingExpirySeconds":86400}`, ``),
		"expiry of 59 s":          edit(`"pendingExpirySeconds":86400`, `"pendingExpirySeconds":59`),
		"temporary lockouts 1001": edit(`"maxTemporaryLockouts":10`, `"maxTemporaryLockouts":1001`),
		"secret of 8 bytes":       edit(`"secretBytes":20`, `"secretBytes":8`),
		"issuer with a colon":     edit(`"issuer":"webapp"`, `"issuer":"a:b"`),
		"unknown algorithm":       edit(`"algorithm":"SHA1"`, `"algorithm":"MD5"`),
		"not JSON":                `mode: Disabled`,
		"null":                    `null`,
		"a string, not a policy":  `"Disabled"`,
		// Exact JSON (see strictjson): a reader that let a key in another case, or the last of two, win would
		// read Disabled where the manager wrote Enforced.
		"a key in another case":     edit(`"mode":"Enforced"`, `"mode":"Enforced","Mode":"Disabled"`),
		"a key twice":               edit(`"mode":"Enforced"`, `"mode":"Enforced","mode":"Disabled"`),
		"a nested key twice":        edit(`"maxFailures":3`, `"maxFailures":3,"maxFailures":100`),
		"a nested key in any case":  edit(`"maxFailures":3`, `"maxFailures":3,"MAXFAILURES":100`),
		"invalid UTF-8 in a string": edit(`"issuer":"webapp"`, "\"issuer\":\"web\xffapp\""),
	} {
		t.Run(name, func(t *testing.T) {
			bad := cm.DeepCopy()
			bad.Data[ConfigMapKeyPolicy] = raw
			if p, err := ParseVerifierConfigMap(bad); err == nil {
				t.Fatalf("loaded %s as %+v", raw, p)
			}
		})
	}
	if _, err := ParseVerifierConfigMap(&corev1.ConfigMap{}); err == nil {
		t.Error("a ConfigMap without the policy loaded")
	}
}

// ValidateResolved's bounds are the CRD's: read them from the generated CRD.
func TestValidationBoundsAreTheCRDs(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "bases", "twofactor.kube2fa.io_twofactorpolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(raw, crd); err != nil {
		t.Fatal(err)
	}
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	field := func(path ...string) apiextensionsv1.JSONSchemaProps {
		s := spec
		for _, p := range path {
			s = s.Properties[p]
		}
		return s
	}
	bound := func(f *float64) float64 { return ptr.Deref(f, -1) }
	for _, tt := range []struct {
		path     []string
		min, max float64
	}{
		{[]string{"totp", "periodSeconds"}, minPeriodSeconds, maxPeriodSeconds},
		{[]string{"totp", "skewSteps"}, 0, otp.MaxSkewSteps},
		{[]string{"hotp", "lookAhead"}, 0, otp.MaxLookAhead},
		{[]string{"hotp", "resyncWindow"}, 0, otp.MaxResyncWindow},
		{[]string{"secretBytes"}, otp.MinSecretBytes, maxSecretBytes},
		{[]string{"lockout", "maxFailures"}, 1, maxMaxFailures},
		{[]string{"lockout", "throttleSeconds"}, 0, maxThrottleSeconds},
		{[]string{"lockout", "maxTemporaryLockouts"}, 0, maxTemporaryLockouts},
		{[]string{"selfEnrollment", "pendingExpirySeconds"}, minPendingExpiry, maxPendingExpiry},
		{[]string{"recoveryCodes"}, 0, otp.MaxRecoveryCodes},
	} {
		f := field(tt.path...)
		if bound(f.Minimum) != tt.min || bound(f.Maximum) != tt.max {
			t.Errorf("spec.%s: the CRD allows %v..%v, the verifier %v..%v", strings.Join(tt.path, "."),
				bound(f.Minimum), bound(f.Maximum), tt.min, tt.max)
		}
	}
	if got := ptr.Deref(field("issuer").MaxLength, -1); got != maxIssuerLength {
		t.Errorf("spec.issuer: the CRD allows %d characters, the verifier %d", got, maxIssuerLength)
	}
}
