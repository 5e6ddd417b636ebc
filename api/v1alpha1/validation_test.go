package v1alpha1_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }

// object parses a manifest written the way a person writes one.
func object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		t.Fatalf("bad test manifest: %v", err)
	}
	return u
}

func policy(name, spec string) string {
	return "apiVersion: twofactor.kube2fa.io/v1alpha1\nkind: TwoFactorPolicy\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

func enrollment(name, spec string) string {
	return "apiVersion: twofactor.kube2fa.io/v1alpha1\nkind: UserEnrollment\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

const totp = "  mode: Enforced\n  methods: [TOTP]\n"

func TestAPIServerRefusesBadManifestsNamingTheField(t *testing.T) {
	ns := env.Namespace(t)
	long := strings.Repeat("u", 257)
	tests := []struct {
		name, manifest string
		want           []string // substrings of the API server's message
	}{
		{"digits 7", policy("p", totp+"  totp: {digits: 7}"), []string{"spec.totp.digits", "supported values"}},
		{"hotp digits 10", policy("p", totp+"  hotp: {digits: 10}"), []string{"spec.hotp.digits"}},
		{"period 0", policy("p", totp+"  totp: {periodSeconds: 0}"), []string{"spec.totp.periodSeconds", "15"}},
		{"period over 300", policy("p", totp+"  totp: {periodSeconds: 301}"), []string{"spec.totp.periodSeconds", "300"}},
		{"skew over 10", policy("p", totp+"  totp: {skewSteps: 11}"), []string{"spec.totp.skewSteps"}},
		{"negative skew", policy("p", totp+"  totp: {skewSteps: -1}"), []string{"spec.totp.skewSteps"}},
		{"unknown algorithm", policy("p", totp+"  totp: {algorithm: MD5}"), []string{"spec.totp.algorithm", "SHA1"}},
		{"look-ahead over 100", policy("p", totp+"  hotp: {lookAhead: 101}"), []string{"spec.hotp.lookAhead"}},
		{"empty methods with Enforced", policy("p", "  mode: Enforced\n  methods: []"), []string{"spec.methods", "at least one"}},
		{"no methods with Optional", policy("p", "  mode: Optional"), []string{"spec.methods", "at least one"}},
		{"unknown method", policy("p", "  mode: Enforced\n  methods: [SMS]"), []string{"spec.methods[0]", "TOTP"}},
		{"method listed twice", policy("p", "  mode: Enforced\n  methods: [TOTP, TOTP]"), []string{"spec.methods[1]", "Duplicate"}},
		{"no mode", policy("p", "  methods: [TOTP]"), []string{"spec.mode", "Required"}},
		{"unknown mode", policy("p", "  mode: Sometimes\n  methods: [TOTP]"), []string{"spec.mode", "Enforced"}},
		{"issuer with colon", policy("p", totp+"  issuer: 'Acme: Corp'"), []string{"spec.issuer", "must not contain ':'"}},
		{"secret of 8 bytes", policy("p", totp+"  secretBytes: 8"), []string{"spec.secretBytes", "16"}},
		{"maxFailures 0", policy("p", totp+"  lockout: {maxFailures: 0}"), []string{"spec.lockout.maxFailures", "1"}},
		{"maxFailures over 100", policy("p", totp+"  lockout: {maxFailures: 101}"), []string{"spec.lockout.maxFailures"}},
		{"more than 20 recovery codes", policy("p", totp+"  recoveryCodes: 21"), []string{"spec.recoveryCodes", "20"}},
		{"negative recovery codes", policy("p", totp+"  recoveryCodes: -1"), []string{"spec.recoveryCodes"}},
		{"negative throttle", policy("p", totp+"  lockout: {throttleSeconds: -1}"), []string{"spec.lockout.throttleSeconds"}},
		{"throttle over a week", policy("p", totp+"  lockout: {throttleSeconds: 604801}"), []string{"spec.lockout.throttleSeconds"}},
		{"resync window over 1000", policy("p", totp+"  hotp: {resyncWindow: 1001}"), []string{"spec.hotp.resyncWindow"}},
		{"negative temporary lockouts", policy("p", totp+"  lockout: {maxTemporaryLockouts: -1}"), []string{"spec.lockout.maxTemporaryLockouts"}},
		{"unknown self-enrollment", policy("p", totp+"  selfEnrollment: {mode: Anyone}"), []string{"spec.selfEnrollment.mode"}},
		{"expiry under a minute", policy("p", totp+"  selfEnrollment: {pendingExpirySeconds: 59}"), []string{"spec.selfEnrollment.pendingExpirySeconds"}},
		{"policy name over 63", policy(strings.Repeat("p", 64), totp), []string{"policy name must be at most 63"}},
		{"enrollment without user", enrollment("e", "  policyRef: {name: p}"), []string{"spec.user", "Required"}},
		{"enrollment with empty user", enrollment("e", "  policyRef: {name: p}\n  user: ''"), []string{"spec.user"}},
		{"enrollment with 257-character user", enrollment("e", "  policyRef: {name: p}\n  user: "+long), []string{"spec.user", "256"}},
		{"enrollment without policyRef", enrollment("e", "  user: alice"), []string{"spec.policyRef", "Required"}},
		{"user with a control character", enrollment("e", "  policyRef: {name: p}\n  user: \"al\\tice\""), []string{"spec.user", "control characters"}},
		{"user with a bidi override", enrollment("e", "  policyRef: {name: p}\n  user: \"\\u202Ealice\""), []string{"spec.user", "bidirectional"}},
		{"user with U+FFFD", enrollment("e", "  policyRef: {name: p}\n  user: \"al\\uFFFDice\""), []string{"spec.user", "U+FFFD"}},
		{"enrollment with unknown method", enrollment("e", "  policyRef: {name: p}\n  user: alice\n  method: SMS"), []string{"spec.method"}},
		{"enrollment name over 249", enrollment(strings.Repeat("e", 250), "  policyRef: {name: p}\n  user: alice"), []string{"its Secret is named <name>-otp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := object(t, tt.manifest)
			u.SetNamespace(ns)
			err := env.Client.Create(context.Background(), u)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want the API server to refuse it as invalid, got %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not mention %q", err.Error(), w)
				}
			}
		})
	}
}

// The code length is one rule: the CRD's enum must allow exactly what the otp package computes.
func TestTheAPIAllowsExactlyTheDigitsOTPSupports(t *testing.T) {
	ns := env.Namespace(t)
	for d := int32(4); d <= 10; d++ {
		for _, method := range []string{"totp", "hotp"} {
			u := object(t, policy(fmt.Sprintf("%s-%d", method, d), totp+fmt.Sprintf("  %s: {digits: %d}", method, d)))
			u.SetNamespace(ns)
			err := env.Client.Create(context.Background(), u)
			if err != nil && !apierrors.IsInvalid(err) {
				t.Fatalf("%s digits %d: %v", method, d, err)
			}
			if accepted := err == nil; accepted != otp.ValidDigits(d) {
				t.Errorf("%s digits %d: the API server accepts it: %v, otp.ValidDigits: %v", method, d, accepted, otp.ValidDigits(d))
			}
		}
	}
}

func TestEnrollmentSpecIsImmutable(t *testing.T) {
	ns := env.Namespace(t)
	tests := []struct {
		name, before, after, want string
	}{
		{"changing user", "  user: alice", "  user: mallory", "spec.user: Invalid value"},
		{"changing policyRef", "  user: alice", "  user: alice\n  _policy: other", "spec.policyRef: Invalid value"},
		{"changing method", "  user: alice\n  method: TOTP", "  user: alice\n  method: HOTP", "method is immutable"},
		{"adding a method", "  user: alice", "  user: alice\n  method: HOTP", "method is immutable"},
		{"removing the method", "  user: alice\n  method: TOTP", "  user: alice", "method is immutable"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := func(s string) string {
				ref := "  policyRef: {name: p}\n"
				if strings.Contains(s, "_policy: other") {
					ref, s = "  policyRef: {name: other}\n", strings.ReplaceAll(s, "\n  _policy: other", "")
				}
				return ref + s
			}
			name := "e" + string(rune('a'+i))
			u := object(t, enrollment(name, spec(tt.before)))
			u.SetNamespace(ns)
			if err := env.Client.Create(context.Background(), u); err != nil {
				t.Fatalf("creating: %v", err)
			}
			changed := object(t, enrollment(name, spec(tt.after)))
			changed.SetNamespace(ns)
			changed.SetResourceVersion(u.GetResourceVersion())
			err := env.Client.Update(context.Background(), changed)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want an invalid error mentioning %q, got %v", tt.want, err)
			}
		})
	}
}

// GitOps tools compare what they applied with what they read back: no default may appear in the object.
func TestObjectsReadBackExactlyAsWritten(t *testing.T) {
	ns := env.Namespace(t)
	for _, manifest := range []string{
		policy("minimal", totp),
		policy("disabled", "  mode: Disabled"),
		policy("full", totp+"  issuer: Acme\n  totp: {algorithm: SHA256, digits: 8, periodSeconds: 60, skewSteps: 0}\n"+
			"  hotp: {algorithm: SHA512, digits: 8, lookAhead: 0}\n  secretBytes: 32\n  lockout: {maxFailures: 5, throttleSeconds: 0, maxTemporaryLockouts: 0}\n"+
			"  selfEnrollment: {mode: AdminOnly, pendingExpirySeconds: 3600}"),
		enrollment("minimal", "  policyRef: {name: minimal}\n  user: alice"),
		enrollment("with-method", "  policyRef: {name: minimal}\n  user: bob\n  method: TOTP"),
	} {
		written := object(t, manifest)
		written.SetNamespace(ns)
		if err := env.Client.Create(context.Background(), written.DeepCopy()); err != nil {
			t.Fatalf("creating %s: %v", written.GetName(), err)
		}
		read := &unstructured.Unstructured{}
		read.SetGroupVersionKind(written.GroupVersionKind())
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(written), read); err != nil {
			t.Fatalf("reading %s back: %v", written.GetName(), err)
		}
		// Compared as JSON: YAML numbers decode as float64, the API server's as int64.
		wrote, _ := json.Marshal(written.Object["spec"])
		got, _ := json.Marshal(read.Object["spec"])
		if string(wrote) != string(got) {
			t.Errorf("%s %s changed on the way through the API server:\nwrote %s\nread  %s",
				written.GetKind(), written.GetName(), wrote, got)
		}
		if _, has := read.Object["status"]; has {
			t.Errorf("%s %s has a status nobody wrote: %v", written.GetKind(), written.GetName(), read.Object["status"])
		}
	}
}
