package controllers

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
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
		Status: v1alpha1.UserEnrollmentStatus{SecretUID: "s-" + name, Conditions: []metav1.Condition{{
			Type: own("Enrolled"), Status: metav1.ConditionStatus(own("False")), Reason: own("PendingConfirmation"),
			Message: own("Waiting for a first valid code"),
		}}},
	}
}

func sameBytes(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// The manager caches an enrollment without what it never reads, and with the strings enrollments share held
// once: what the reconcilers read is unchanged.
func TestACachedEnrollmentKeepsWhatTheReconcilersRead(t *testing.T) {
	a, err := leanEnrollment(decoded("alice"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := leanEnrollment(decoded("bob"))
	alice, bob := a.(*v1alpha1.UserEnrollment), b.(*v1alpha1.UserEnrollment)

	want := decoded("alice")
	want.ManagedFields = nil
	delete(want.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
	if !equality.Semantic.DeepEqual(alice, want) {
		t.Errorf("cached as\n%+v\nwant\n%+v", alice, want)
	}
	for what, pair := range map[string][2]string{
		"namespace":         {alice.Namespace, bob.Namespace},
		"kind":              {alice.Kind, bob.Kind},
		"policy":            {alice.Spec.PolicyRef.Name, bob.Spec.PolicyRef.Name},
		"method":            {string(alice.Spec.Method), string(bob.Spec.Method)},
		"condition reason":  {alice.Status.Conditions[0].Reason, bob.Status.Conditions[0].Reason},
		"condition message": {alice.Status.Conditions[0].Message, bob.Status.Conditions[0].Message},
	} {
		if !sameBytes(pair[0], pair[1]) {
			t.Errorf("the %s is held twice", what)
		}
	}
	if !sameBytes(alice.Spec.User, alice.Name) {
		t.Error("a user named like the enrollment is held twice")
	}

	// Other objects lose their managed fields only.
	full := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "manager"}}}}
	got, err := leanEnrollment(full)
	if c := got.(*corev1.ConfigMap); err != nil || c.ManagedFields != nil || c.Annotations["a"] != "b" {
		t.Errorf("a ConfigMap became %+v, %v", c.ObjectMeta, err)
	}
}
