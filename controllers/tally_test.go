package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
)

// The tally is the count of what the enrollment events describe, whatever their order across enrollments:
// the same as counting the enrollments that remain.
func TestTheTallyCountsWhatTheEventsLeave(t *testing.T) {
	mk := func(name, policy string, enrolled bool) *v1alpha1.UserEnrollment {
		e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: policy}, User: name}}
		status := metav1.ConditionFalse
		if enrolled {
			status = metav1.ConditionTrue
		}
		e.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionEnrolled, Status: status},
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue}}
		return e
	}
	webapp, admin := types.NamespacedName{Namespace: "ns", Name: "webapp"}, types.NamespacedName{Namespace: "ns", Name: "admin"}
	tl := newTally()
	alice, bob, carol := mk("alice", "webapp", false), mk("bob", "webapp", false), mk("carol", "admin", true)
	for _, e := range []*v1alpha1.UserEnrollment{alice, bob, carol} {
		if !tl.change(nil, e) {
			t.Fatalf("adding %s changed nothing", e.Name)
		}
	}
	confirmed := mk("alice", "webapp", true)
	if !tl.change(alice, confirmed) {
		t.Fatal("a confirmation changed no count")
	}
	relabelled := confirmed.DeepCopy()
	relabelled.Labels = map[string]string{"team": "a"}
	if tl.change(confirmed, relabelled) {
		t.Fatal("a change that moves no count was reported as one")
	}
	tl.change(bob, nil)
	if got, want := tl.of(webapp), enrollment.Count([]v1alpha1.UserEnrollment{*relabelled}); got != want {
		t.Fatalf("webapp: %+v, want %+v", got, want)
	}
	if got, want := tl.of(admin), enrollment.Count([]v1alpha1.UserEnrollment{*carol}); got != want {
		t.Fatalf("admin: %+v, want %+v", got, want)
	}
	tl.change(relabelled, nil)
	tl.change(carol, nil)
	if len(tl.counts) != 0 {
		t.Fatalf("policies without enrollments are still counted: %+v", tl.counts)
	}
}
