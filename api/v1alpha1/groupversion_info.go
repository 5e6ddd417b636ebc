// Package v1alpha1 contains the kube2fa API: TwoFactorPolicy and UserEnrollment.
// +kubebuilder:object:generate=true
// +groupName=twofactor.kube2fa.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the kube2fa API.
	GroupVersion = schema.GroupVersion{Group: "twofactor.kube2fa.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kube2fa types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kube2fa types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
