package enrollment

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

func TestReadyFollowsTheFactsInOrder(t *testing.T) {
	enforced := &v1alpha1.ResolvedPolicy{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}
	disabled := &v1alpha1.ResolvedPolicy{Mode: v1alpha1.ModeDisabled, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}
	ours := &SecretFacts{Name: "alice-otp", UID: "s1", Owned: true}
	foreign := &SecretFacts{Name: "alice-otp", UID: "s2"}
	base := Facts{Generation: 3, PolicyName: "webapp", Method: v1alpha1.MethodTOTP, Policy: enforced, Secret: ours}
	with := func(change func(*Facts)) Facts { f := base; change(&f); return f }
	tests := []struct {
		name     string
		facts    Facts
		status   metav1.ConditionStatus
		reason   string
		message  string
		needsKey bool
	}{
		{"provisioned", base, metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned, "alice-otp", false},
		{"no policy", with(func(f *Facts) { f.Policy, f.Secret = nil, nil }), metav1.ConditionFalse, v1alpha1.ReasonPolicyNotFound, `"webapp" not found`, false},
		{"no policy, even with a key", with(func(f *Facts) { f.Policy = nil }), metav1.ConditionFalse, v1alpha1.ReasonPolicyNotFound, "", false},
		{"a duplicate", with(func(f *Facts) { f.Duplicate, f.Secret = "alice", nil }), metav1.ConditionFalse, v1alpha1.ReasonDuplicateUser, `"alice"`, false},
		{"disabled before a key", with(func(f *Facts) { f.Policy, f.Secret = disabled, nil }), metav1.ConditionFalse, v1alpha1.ReasonPolicyDisabled, "Disabled", false},
		{"disabled keeps a key ready", with(func(f *Facts) { f.Policy = disabled }), metav1.ConditionTrue, v1alpha1.ReasonKeyProvisioned, "", false},
		{"method not allowed before a key", with(func(f *Facts) { f.Method, f.Secret = v1alpha1.MethodHOTP, nil }), metav1.ConditionFalse, v1alpha1.ReasonMethodNotAllowed, "does not allow", false},
		{"method no longer allowed", with(func(f *Facts) { f.Method = v1alpha1.MethodHOTP }), metav1.ConditionFalse, v1alpha1.ReasonMethodNotAllowed, "no longer allows", false},
		{"no key yet", with(func(f *Facts) { f.Secret = nil }), metav1.ConditionFalse, v1alpha1.ReasonNoKey, "Provisioning", true},
		{"provisioning failed", with(func(f *Facts) { f.Secret, f.ProvisionFailed = nil, true }), metav1.ConditionFalse, v1alpha1.ReasonNoKey, "failed", true},
		{"a foreign Secret", with(func(f *Facts) { f.Secret = foreign }), metav1.ConditionFalse, v1alpha1.ReasonSecretConflict, `"alice-otp"`, false},
		{"a lost key gets no new one", with(func(f *Facts) { f.Secret, f.KeyLost = nil, true }), metav1.ConditionFalse, v1alpha1.ReasonKeyLost, v1alpha1.AnnotationReissue, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Ready(tt.facts)
			if c.Type != v1alpha1.ConditionReady || c.Status != tt.status || c.Reason != tt.reason || c.ObservedGeneration != 3 {
				t.Fatalf("Ready = %s %s (generation %d), want %s %s", c.Status, c.Reason, c.ObservedGeneration, tt.status, tt.reason)
			}
			if !strings.Contains(c.Message, tt.message) {
				t.Errorf("message %q does not say %q", c.Message, tt.message)
			}
			if got := NeedsKey(tt.facts); got != tt.needsKey {
				t.Errorf("NeedsKey = %v, want %v", got, tt.needsKey)
			}
		})
	}
}

func TestBindKeyStartsOverOnlyForAnotherKey(t *testing.T) {
	st := &v1alpha1.UserEnrollmentStatus{}
	if BindKey(st, "alice-otp", "s1") || st.SecretUID != "s1" || st.SecretName != "alice-otp" {
		t.Fatalf("first key: %+v", st)
	}
	Confirm(st, t0)
	if BindKey(st, "alice-otp", "s1") || st.ConfirmedAt == nil {
		t.Fatal("binding the same key again forgot the confirmation")
	}
	if !BindKey(st, "alice-otp", "s2") || st.ConfirmedAt != nil || st.SecretUID != "s2" {
		t.Fatalf("a new key did not start over: %+v", st)
	}
}

func TestConfirmStampsOnceAtAPIServerPrecision(t *testing.T) {
	st := &v1alpha1.UserEnrollmentStatus{}
	Confirm(st, t0.Add(1500*1e6))
	if !st.ConfirmedAt.Time.Equal(t0.Add(1e9)) {
		t.Fatalf("confirmedAt = %v, want %v", st.ConfirmedAt, t0.Add(1e9))
	}
	Confirm(st, t0.Add(3600*1e9))
	if !st.ConfirmedAt.Time.Equal(t0.Add(1e9)) {
		t.Error("a second confirmation moved confirmedAt")
	}
	SetEnrolled(st, 1)
	if !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionEnrolled) {
		t.Error("a confirmed enrollment is not Enrolled")
	}
}

func TestAKeyIsLostOnlyForAConfirmedEnrollmentWhoseSecretIsGone(t *testing.T) {
	now := metav1.NewTime(t0)
	confirmed := &v1alpha1.UserEnrollmentStatus{SecretUID: "s1", ConfirmedAt: &now}
	pending := &v1alpha1.UserEnrollmentStatus{SecretUID: "s1"}
	same, other := &SecretFacts{UID: "s1", Owned: true}, &SecretFacts{UID: "s2", Owned: true}
	for _, tt := range []struct {
		name   string
		st     *v1alpha1.UserEnrollmentStatus
		secret *SecretFacts
		lost   bool
	}{
		{"confirmed, its Secret there", confirmed, same, false},
		{"confirmed, no Secret", confirmed, nil, true},
		{"confirmed, another Secret in its place", confirmed, other, true},
		{"pending, no Secret: a new key is harmless", pending, nil, false},
		{"never provisioned", &v1alpha1.UserEnrollmentStatus{}, nil, false},
	} {
		if got := KeyLost(tt.st, tt.secret); got != tt.lost {
			t.Errorf("%s: KeyLost = %v, want %v", tt.name, got, tt.lost)
		}
	}
}

func TestReissueStartsOverOnlyForALostKeyAndOncePerValue(t *testing.T) {
	now := metav1.NewTime(t0)
	st := &v1alpha1.UserEnrollmentStatus{SecretUID: "s1", ConfirmedAt: &now}
	if Reissue(st, "ticket-1", false) || st.ConfirmedAt == nil {
		t.Fatal("a reissue with the key in place started over")
	}
	if Reissue(st, "ticket-1", true) {
		t.Fatal("a value handled while the key was fine reissued a key lost later")
	}
	if Reissue(st, "", true) {
		t.Fatal("no annotation reissued")
	}
	if !Reissue(st, "ticket-2", true) || st.ConfirmedAt != nil || st.LastHandledReissue != "ticket-2" {
		t.Fatalf("a new value for a lost key did not start over: %+v", st)
	}
}
