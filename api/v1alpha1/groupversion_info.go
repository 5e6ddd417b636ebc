// Package v1alpha1 contains the kube2fa API: TwoFactorPolicy and UserEnrollment.
// +kubebuilder:object:generate=true
// +groupName=twofactor.kube2fa.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the kube2fa API.
	GroupVersion = schema.GroupVersion{Group: "twofactor.kube2fa.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kube2fa types with a scheme. It is apimachinery's: the API package
	// depends on nothing but apimachinery, so that clients import it cheaply.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kube2fa types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &TwoFactorPolicy{}, &TwoFactorPolicyList{}, &UserEnrollment{}, &UserEnrollmentList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
