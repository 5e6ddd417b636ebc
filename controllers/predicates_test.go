package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

func TestTheManagerIgnoresVerificationFactsButNotLocksOrSpec(t *testing.T) {
	now := metav1.NewTime(time.Unix(1_800_000_000, 0))
	base := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	tests := []struct {
		name   string
		change func(e *v1alpha1.UserEnrollment)
		want   bool
	}{
		{"a confirmation", func(e *v1alpha1.UserEnrollment) { e.Status.ConfirmedAt = &now }, false},
		{"a lock", func(e *v1alpha1.UserEnrollment) {
			e.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionLocked, Status: metav1.ConditionTrue}}
		}, true},
		{"a spec change", func(e *v1alpha1.UserEnrollment) { e.Generation = 2 }, true},
		{"an unlock", func(e *v1alpha1.UserEnrollment) { e.Annotations = map[string]string{v1alpha1.AnnotationUnlock: "1"} }, true},
		{"a reissue", func(e *v1alpha1.UserEnrollment) { e.Annotations = map[string]string{v1alpha1.AnnotationReissue: "1"} }, true},
		{"a deletion", func(e *v1alpha1.UserEnrollment) { e.DeletionTimestamp = &now }, true},
		{"a new key", func(e *v1alpha1.UserEnrollment) { e.Status.SecretUID = "other" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tt.change(cur)
			if got := needsManager(base, cur); got != tt.want {
				t.Errorf("needsManager = %v, want %v", got, tt.want)
			}
		})
	}
}
