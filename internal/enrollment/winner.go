package enrollment

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Precedes reports whether a, rather than b, is the enrollment of the user they both name under one policy:
// one bound to a key before one that is not, then the older one, and of two created in the same second the
// one with the smaller name. A key, once bound, is never displaced by an enrollment created later (in the
// same second, with a smaller name: creation times have whole seconds), so that one user never holds two
// keys. The manager marks the other DuplicateUser and gives it no key; the verifier checks codes against
// the one that precedes.
func Precedes(a, b *v1alpha1.UserEnrollment) bool {
	if keyed := a.Status.SecretUID != ""; keyed != (b.Status.SecretUID != "") {
		return keyed
	}
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

// MaxUserLength is the longest user, in characters, as the CRD's spec.user allows.
const MaxUserLength = 256

// ValidUser reports why user can never be a sane identity, or nil: it is empty or too long, not valid UTF-8,
// or holds a control character, a bidirectional override or isolate (which make two different users look
// alike), or the replacement character (the trace of invalid input). The CRD's CEL rule on spec.user
// refuses the same characters; a test holds the two together.
func ValidUser(user string) error {
	switch {
	case user == "":
		return errors.New("user is required")
	case !utf8.ValidString(user):
		return errors.New("user is not valid UTF-8")
	case utf8.RuneCountInString(user) > MaxUserLength:
		return fmt.Errorf("user is longer than %d characters", MaxUserLength)
	}
	for _, r := range user {
		if unicode.IsControl(r) || r == 0x200E || r == 0x200F || (r >= 0x202A && r <= 0x202E) ||
			(r >= 0x2066 && r <= 0x2069) || r == utf8.RuneError {
			return fmt.Errorf("user holds the character %U, which no identity may hold", r)
		}
	}
	return nil
}
