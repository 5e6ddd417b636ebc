package render

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// A state Lease is the enrollment's (so garbage-collected with it) without asking to block its deletion,
// which would need a permission the verifier that creates it does not hold; it asks the API server to reset
// its managedFields, and carries no labels (each decision pays for every byte); and its state reads back
// exactly, for its enrollment only.
func TestAStateLeaseRoundTripsForItsEnrollmentOnly(t *testing.T) {
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "alice", UID: "e1"},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "alice"}}
	want := v1alpha1.VerificationState{Key: "s1", FailedAttempts: 2, LastUsedStep: ptr.To[int64](7),
		RecoveryGeneration: 1, RecoveryCodes: 10, RecoveryCodesUsed: []int32{3}}
	l, err := StateLease(e, want)
	if err != nil {
		t.Fatal(err)
	}
	owner := metav1.GetControllerOf(l)
	if owner == nil || owner.UID != e.UID || owner.BlockOwnerDeletion != nil {
		t.Fatalf("owner reference: %+v", l.OwnerReferences)
	}
	if l.Name != StateLeaseName("webapp", "alice") || l.Namespace != "shop" || len(l.ManagedFields) != 1 || l.ManagedFields[0].Manager != "" ||
		len(l.Labels) != 0 {
		t.Fatalf("lease metadata: %+v", l.ObjectMeta)
	}
	got, err := RecordedState(l, e)
	if err != nil || got == nil || !equality.Semantic.DeepEqual(*got, want) {
		t.Fatalf("read back %+v, %v; want %+v", got, err, want)
	}
	other := e.DeepCopy()
	other.UID = "e2"
	if got, err := RecordedState(l, other); got != nil || err != nil {
		t.Fatalf("another enrollment read the state: %+v, %v", got, err)
	}
	if got, err := RecordedState(nil, e); got != nil || err != nil {
		t.Fatalf("no Lease: %+v, %v", got, err)
	}
	l.Annotations[v1alpha1.AnnotationState] = `{"key":"s1","failedAttempts":0,"failedAttempts":5}`
	if _, err := RecordedState(l, e); err == nil {
		t.Fatal("a state with a key given twice was read")
	}
}

// Only a controller reference to a kube2fa UserEnrollment points to an enrollment.
func TestControllingEnrollment(t *testing.T) {
	e := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Name: "alice", UID: "a"}}
	ours := *metav1.NewControllerRef(e, v1alpha1.GroupVersion.WithKind("UserEnrollment"))
	foreign := ours
	foreign.APIVersion = "example.com/v1"
	notController := ours
	notController.Controller = nil
	for name, tc := range map[string]struct {
		refs []metav1.OwnerReference
		want bool
	}{
		"ours": {[]metav1.OwnerReference{ours}, true}, "none": {nil, false},
		"another group's UserEnrollment": {[]metav1.OwnerReference{foreign}, false},
		"an owner, not the controller":   {[]metav1.OwnerReference{notController}, false},
	} {
		m := &metav1.ObjectMeta{OwnerReferences: tc.refs}
		if got := ControllingEnrollment(m); (got != nil) != tc.want || (got != nil && got.Name != "alice") {
			t.Errorf("%s: %v", name, got)
		}
	}
}
