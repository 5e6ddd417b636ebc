package controllers

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
)

// decoded is an enrollment as a watch decodes it: every string its own.
func decoded(name string) *v1alpha1.UserEnrollment {
	own := func(s string) string { return string([]byte(s)) }
	return &v1alpha1.UserEnrollment{
		TypeMeta: metav1.TypeMeta{APIVersion: own("twofactor.kube2fa.io/v1alpha1"), Kind: own("UserEnrollment")},
		ObjectMeta: metav1.ObjectMeta{Namespace: own("ns"), Name: own(name), UID: types.UID("u-" + name), ResourceVersion: "7",
			Labels: map[string]string{"team": "a"},
			Annotations: map[string]string{
				v1alpha1.AnnotationUnlock:                          "ticket-1",
				"kubectl.kubernetes.io/last-applied-configuration": `{"a big":"copy of the object"}`,
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: own("webapp")}, User: own(name),
			Method: v1alpha1.Method(own("TOTP"))},
		Status: v1alpha1.UserEnrollmentStatus{SecretName: own(name + "-otp"), SecretUID: "s-" + name, ObservedGeneration: 1,
			Method: v1alpha1.Method(own("TOTP")), LastHandledUnlock: "ticket-1", Conditions: []metav1.Condition{{
				Type: own("Ready"), Status: metav1.ConditionStatus(own("True")), Reason: own("KeyProvisioned"),
				Message: own("Key provisioned in Secret " + name + "-otp"), LastTransitionTime: metav1.Now(),
			}, {
				Type: own("Enrolled"), Status: metav1.ConditionStatus(own("False")), Reason: own("PendingConfirmation"),
				Message: own("Waiting for a first valid code"), LastTransitionTime: metav1.Now(),
			}}},
	}
}

func sameBytes(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// The manager caches an enrollment without what the watches' handlers and the lookups of a user's enrollments
// never read (a pass reads the whole enrollment from the API server), and with the strings enrollments share
// held once: what they read is unchanged.
func TestACachedEnrollmentKeepsWhatTheHandlersRead(t *testing.T) {
	a, err := leanEnrollment(decoded("alice"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := leanEnrollment(decoded("bob"))
	alice, bob := a.(*v1alpha1.UserEnrollment), b.(*v1alpha1.UserEnrollment)

	full := decoded("alice")
	want := decoded("alice")
	want.ManagedFields = nil
	delete(want.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
	want.Status = v1alpha1.UserEnrollmentStatus{SecretUID: "s-alice", ObservedGeneration: 1,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue}}}
	if !equality.Semantic.DeepEqual(alice, want) {
		t.Errorf("cached as\n%+v\nwant\n%+v", alice, want)
	}
	if enrollment.CountOf(alice) != enrollment.CountOf(full) || needsManager(full, alice) {
		t.Errorf("the handlers read the cached enrollment differently: counts %+v, want %+v", enrollment.CountOf(alice), enrollment.CountOf(full))
	}
	for what, pair := range map[string][2]string{
		"namespace":      {alice.Namespace, bob.Namespace},
		"kind":           {alice.Kind, bob.Kind},
		"policy":         {alice.Spec.PolicyRef.Name, bob.Spec.PolicyRef.Name},
		"method":         {string(alice.Spec.Method), string(bob.Spec.Method)},
		"condition type": {alice.Status.Conditions[0].Type, bob.Status.Conditions[0].Type},
	} {
		if !sameBytes(pair[0], pair[1]) {
			t.Errorf("the %s is held twice", what)
		}
	}
	if !sameBytes(alice.Spec.User, alice.Name) {
		t.Error("a user named like the enrollment is held twice")
	}

	// Other objects lose their managed fields only.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "manager"}}}}
	got, err := leanEnrollment(cm)
	if c := got.(*corev1.ConfigMap); err != nil || c.ManagedFields != nil || c.Annotations["a"] != "b" {
		t.Errorf("a ConfigMap became %+v, %v", c.ObjectMeta, err)
	}
}
