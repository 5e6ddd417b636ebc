package render

import (
	"encoding/json"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	userenrollment "github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/strictjson"
)

// StateLeaseName is the name of the Lease holding the verification state of user under policy. It is named
// by the pair, not by the enrollment, so that a user's state is found from the user alone; the name is the
// one self-enrollment gives the enrollment (a different kind of object: they do not collide).
func StateLeaseName(policy, user string) string { return userenrollment.Name(policy, user) }

// StateLease renders the Lease holding the verification state of enrollment e: controlled by e, so that it
// is deleted with it. It carries no labels: nothing selects state Leases (they are read by name), and every
// byte of the Lease is paid for by every decision, in each of the API server's passes over it (labels cost
// about 2% of a decision's control-plane CPU; README, Performance). Its controller reference says whose it is.
func StateLease(e *v1alpha1.UserEnrollment, state v1alpha1.VerificationState) (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name:            StateLeaseName(e.Spec.PolicyRef.Name, e.Spec.User),
		Namespace:       e.Namespace,
		OwnerReferences: []metav1.OwnerReference{stateOwner(e)},
	}}
	return l, SetState(l, state)
}

// SetState records state in l. It also asks the API server to reset l's managedFields: the state Lease is
// written only by kube2fa, field by field ownership tells nobody anything, and tracking it was the largest
// part of the API server's cost of a decision. A write that resets them leaves only its own entry.
func SetState(l *coordinationv1.Lease, state v1alpha1.VerificationState) error {
	raw, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encoding verification state: %w", err)
	}
	metav1.SetMetaDataAnnotation(&l.ObjectMeta, v1alpha1.AnnotationState, string(raw))
	l.ManagedFields = Untracked()
	return nil
}

// Untracked is the managedFields of a write that asks the API server to keep none: a single empty entry.
func Untracked() []metav1.ManagedFieldsEntry { return []metav1.ManagedFieldsEntry{{}} }

// RecordedState returns the verification state Lease l records for enrollment e: nil when there is no Lease
// (l is nil) or it is another enrollment's (a previous enrollment of the user), whose state counts for
// nothing here.
func RecordedState(l *coordinationv1.Lease, e *v1alpha1.UserEnrollment) (*v1alpha1.VerificationState, error) {
	if l == nil || !metav1.IsControlledBy(l, e) {
		return nil, nil
	}
	return ParseState(l, e)
}

// ParseState returns the verification state that Lease l holds for enrollment e, or an error when l is not
// e's (another enrollment's, or a Lease kube2fa did not write) or its state cannot be read. Errors name the
// Lease, never its content.
func ParseState(l *coordinationv1.Lease, e *v1alpha1.UserEnrollment) (*v1alpha1.VerificationState, error) {
	if !metav1.IsControlledBy(l, e) {
		return nil, fmt.Errorf("lease %s/%s is not controlled by enrollment %s", l.Namespace, l.Name, e.Name)
	}
	var st v1alpha1.VerificationState
	if err := strictjson.Unmarshal([]byte(l.Annotations[v1alpha1.AnnotationState]), &st); err != nil {
		return nil, fmt.Errorf("lease %s/%s: annotation %s: %w", l.Namespace, l.Name, v1alpha1.AnnotationState, err)
	}
	return &st, nil
}

// stateOwner is the controller reference of a state Lease to its enrollment. It does not block the
// enrollment's deletion: that would need update on userenrollments/finalizers, which the verifier that
// creates the Lease has no reason to hold (and which clusters enforcing owner reference permissions demand).
func stateOwner(e *v1alpha1.UserEnrollment) metav1.OwnerReference {
	ref := *metav1.NewControllerRef(e, v1alpha1.GroupVersion.WithKind("UserEnrollment"))
	ref.BlockOwnerDeletion = nil
	return ref
}
