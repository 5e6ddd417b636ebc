package enrollment

import "github.com/kube2fa/kube2fa/api/v1alpha1"

// Precedes reports whether a, rather than b, is the enrollment of the user they both name under one policy:
// the older one, and of two created in the same second the one with the smaller name. The manager marks
// the other DuplicateUser; the verifier checks codes against the one that precedes.
func Precedes(a, b *v1alpha1.UserEnrollment) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// Winner returns the enrollment among items that precedes all the others, ignoring those being deleted, or
// nil when there is none. items are enrollments of one user under one policy (see Key).
func Winner(items []v1alpha1.UserEnrollment) *v1alpha1.UserEnrollment {
	var found *v1alpha1.UserEnrollment
	for i := range items {
		e := &items[i]
		if e.DeletionTimestamp.IsZero() && (found == nil || Precedes(e, found)) {
			found = e
		}
	}
	return found
}

// Key is what enrollments of one user under one policy share: "<policy>/<user>". Both binaries index their
// caches by it. A policy name cannot hold a "/", so two different pairs never share a key.
func Key(policy, user string) string { return policy + "/" + user }

// KeyOf is the Key of e.
func KeyOf(e *v1alpha1.UserEnrollment) string { return Key(e.Spec.PolicyRef.Name, e.Spec.User) }
