package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

func TestCachedSecretMetadataKeepsOnlyIdentityAndOwnership(t *testing.T) {
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", UID: "e1"}}
	owner := *metav1.NewControllerRef(e, v1alpha1.GroupVersion.WithKind("UserEnrollment"))
	in := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice-otp", UID: "s1", ResourceVersion: "42",
			Labels:          map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue},
			Annotations:     map[string]string{"note": "x"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "manager"}},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
	}
	out, err := ownershipOnly(in)
	if err != nil {
		t.Fatal(err)
	}
	m := out.(*metav1.PartialObjectMetadata)
	if m.Kind != "Secret" || m.Namespace != "ns" || m.Name != "alice-otp" || m.UID != "s1" || m.ResourceVersion != "42" {
		t.Errorf("identity lost: %+v", m)
	}
	if !metav1.IsControlledBy(m, e) {
		t.Error("the controlling enrollment is lost")
	}
	if m.Labels != nil || m.Annotations != nil || m.ManagedFields != nil {
		t.Errorf("kept labels %v, annotations %v or managed fields %v", m.Labels, m.Annotations, m.ManagedFields)
	}

	// A full Secret (not what the reconciler watches) only loses its managed fields.
	full := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "manager"}}}}
	got, err := ownershipOnly(full)
	if s := got.(*corev1.Secret); err != nil || s.ManagedFields != nil || s.Labels["a"] != "b" {
		t.Errorf("a full Secret became %+v, %v", s.ObjectMeta, err)
	}
}
