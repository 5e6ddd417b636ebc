package enrollment

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

func enrolled(name string, created time.Time) v1alpha1.UserEnrollment {
	return v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
}

func keyed(name string, created time.Time) v1alpha1.UserEnrollment {
	e := enrolled(name, created)
	e.Status.SecretUID = "secret-of-" + name
	return e
}

func TestTheOldestEnrollmentOfAUserWinsThenTheSmallestName(t *testing.T) {
	deleting := enrolled("aaa-deleting", t0.Add(-time.Hour))
	deleting.DeletionTimestamp = &metav1.Time{Time: t0}
	tests := []struct {
		name  string
		items []v1alpha1.UserEnrollment
		want  string // "" for none
	}{
		{"none", nil, ""},
		{"one", []v1alpha1.UserEnrollment{enrolled("alice", t0)}, "alice"},
		{"the older", []v1alpha1.UserEnrollment{enrolled("a", t0.Add(time.Second)), enrolled("b", t0)}, "b"},
		{"the smaller name in the same second", []v1alpha1.UserEnrollment{enrolled("b", t0), enrolled("a", t0)}, "a"},
		{"never one being deleted", []v1alpha1.UserEnrollment{deleting, enrolled("z", t0)}, "z"},
		{"only one being deleted", []v1alpha1.UserEnrollment{deleting}, ""},
		{"the one with a key, before a smaller name of the same second", []v1alpha1.UserEnrollment{enrolled("a", t0), keyed("b", t0)}, "b"},
		{"the one with a key, before an older one", []v1alpha1.UserEnrollment{enrolled("a", t0), keyed("b", t0.Add(time.Second))}, "b"},
		{"of two with keys, the older", []v1alpha1.UserEnrollment{keyed("a", t0.Add(time.Second)), keyed("b", t0)}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Winner(tt.items)
			if (got == nil && tt.want != "") || (got != nil && got.Name != tt.want) {
				t.Fatalf("Winner = %v, want %q", got, tt.want)
			}
		})
	}
}

func TestPrecedesIsAStrictOrder(t *testing.T) {
	a, b, c := enrolled("a", t0), enrolled("b", t0), enrolled("a", t0.Add(time.Second))
	for _, x := range []*v1alpha1.UserEnrollment{&a, &b, &c} {
		if Precedes(x, x) {
			t.Errorf("%s precedes itself", x.Name)
		}
	}
	if !Precedes(&a, &b) || Precedes(&b, &a) || !Precedes(&b, &c) || Precedes(&c, &b) {
		t.Error("Precedes is not the order: older first, then smaller name")
	}
}

func TestAnEnrollmentsKeyIsItsPolicyAndUser(t *testing.T) {
	e := &v1alpha1.UserEnrollment{Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "alice"}}
	if KeyOf(e) != Key("webapp", "alice") || Key("webapp", "alice") == Key("webapp", "alice2") {
		t.Errorf("KeyOf = %q", KeyOf(e))
	}
}
