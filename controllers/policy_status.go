package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// configMapState is what a pass made of a policy's verifier ConfigMap.
type configMapState int

const (
	// configMapCurrent: the ConfigMap holds the current spec (created, updated or already so).
	configMapCurrent configMapState = iota
	// configMapConflict: a ConfigMap of that name exists and is not the policy's; it is left alone.
	configMapConflict
	// configMapFailed: the ConfigMap could not be read or written; the pass is retried.
	configMapFailed
)

// policyReady is a policy's Ready condition, from what became of its verifier ConfigMap name.
func policyReady(generation int64, name string, state configMapState) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: generation}
	switch state {
	case configMapCurrent:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonReconciled, "Verifier ConfigMap "+name+" is current"
	case configMapConflict:
		c.Reason, c.Message = v1alpha1.ReasonConfigMapConflict, "ConfigMap "+name+" exists and is not owned by this policy"
	default:
		c.Reason, c.Message = v1alpha1.ReasonConfigMapFailed, "Writing the verifier ConfigMap "+name+" failed; retrying"
	}
	return c
}
