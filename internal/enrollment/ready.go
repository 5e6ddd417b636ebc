package enrollment

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// Facts are what the manager found out about an enrollment, from which its Ready condition follows. They are
// gathered before any decision, so that a failed read decides nothing: it is an error, not a fact.
type Facts struct {
	// Generation is the enrollment's metadata.generation.
	Generation int64
	// Policy is the enrollment's policy resolved, or nil when it does not exist.
	Policy *v1alpha1.ResolvedPolicy
	// PolicyName is the name the enrollment refers to.
	PolicyName string
	// Method is the method the enrollment uses: its key's, once one is bound, else the one a new key would
	// get (see ResolvedPolicy.MethodFor).
	Method v1alpha1.Method
	// Duplicate names an enrollment that precedes this one for the same user and policy; empty when none.
	Duplicate string
	// Secret is the Secret with the enrollment's Secret name; nil when there is none.
	Secret *SecretFacts
	// ProvisionFailed is true when creating the Secret was tried and failed.
	ProvisionFailed bool
	// KeyLost is true when the key a confirmed enrollment was confirmed with is gone (see KeyLost).
	KeyLost bool
}

// SecretFacts describe the Secret found under an enrollment's Secret name.
type SecretFacts struct {
	Name string
	// UID binds the verification state to the key the Secret holds.
	UID string
	// Owned is true when the enrollment controls the Secret.
	Owned bool
	// Method is the method of the key, from the Secret's own snapshot, when the manager read or wrote its data
	// in this pass (it created the Secret, or checked its provenance); empty otherwise.
	Method v1alpha1.Method
	// NoQRCode is true when the manager created the Secret in this pass without a QR code (see
	// render.HasQRCode).
	NoQRCode bool
}

// NeedsKey reports whether a key must be generated: the enrollment is the user's, its policy lets it enroll
// with its method, and no Secret exists yet. A Secret that exists is never replaced.
func NeedsKey(f Facts) bool {
	return f.Policy != nil && f.Duplicate == "" && f.Secret == nil && !f.KeyLost && f.Policy.Allows(f.Method)
}

// KeyLost reports whether st was confirmed with a key whose Secret is gone, or another Secret stands in its
// place. Such an enrollment must fail closed: a new key issued behind the user's back would make it pending,
// and under Optional a pending user is not asked for a code at all.
func KeyLost(st *v1alpha1.UserEnrollmentStatus, secret *SecretFacts) bool {
	return st.ConfirmedAt != nil && st.SecretUID != "" && (secret == nil || secret.UID != st.SecretUID)
}

// Reissue handles the administrator's reissue annotation: a value not handled before is recorded, and when
// the key is lost, st starts over as a pending enrollment so that a new key is issued. It reports whether
// it started over. A value set while the key is fine is consumed, so that it cannot reissue a key lost
// later behind the administrator's back.
func Reissue(st *v1alpha1.UserEnrollmentStatus, annotation string, lost bool) bool {
	if annotation == "" || annotation == st.LastHandledReissue {
		return false
	}
	st.LastHandledReissue = annotation
	if !lost {
		return false
	}
	Reset(st)
	return true
}

// Ready returns the enrollment's Ready condition: True when its own key is provisioned and its policy still
// allows its method (or is Disabled, when nobody is asked), False with the first reason that stands in
// the way otherwise.
func Ready(f Facts) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: f.Generation}
	set := func(reason, format string, args ...any) metav1.Condition {
		c.Reason, c.Message = reason, fmt.Sprintf(format, args...)
		return c
	}
	p := f.Policy
	switch {
	case p == nil:
		return set(v1alpha1.ReasonPolicyNotFound, "TwoFactorPolicy %q not found", f.PolicyName)
	case f.Duplicate != "":
		return set(v1alpha1.ReasonDuplicateUser, "UserEnrollment %q already enrolls this user under this policy", f.Duplicate)
	case f.KeyLost:
		return set(v1alpha1.ReasonKeyLost, "The key this enrollment was confirmed with is gone: codes are refused until an "+
			"administrator deletes the enrollment or sets the %s annotation", v1alpha1.AnnotationReissue)
	case f.Secret == nil && p.Mode == v1alpha1.ModeDisabled:
		return set(v1alpha1.ReasonPolicyDisabled, "TwoFactorPolicy %q is Disabled: no key is provisioned", f.PolicyName)
	case f.Secret == nil && !p.Allows(f.Method):
		return set(v1alpha1.ReasonMethodNotAllowed, "TwoFactorPolicy %q does not allow method %q", f.PolicyName, f.Method)
	case f.Secret == nil && f.ProvisionFailed:
		return set(v1alpha1.ReasonNoKey, "Provisioning the key failed; retrying")
	case f.Secret == nil:
		return set(v1alpha1.ReasonNoKey, "Provisioning the key")
	case !f.Secret.Owned:
		return set(v1alpha1.ReasonSecretConflict, "Secret %q exists and is not owned by this enrollment", f.Secret.Name)
	case p.Mode != v1alpha1.ModeDisabled && !p.Allows(f.Method):
		return set(v1alpha1.ReasonMethodNotAllowed, "TwoFactorPolicy %q no longer allows method %q", f.PolicyName, f.Method)
	}
	c.Status = metav1.ConditionTrue
	return set(v1alpha1.ReasonKeyProvisioned, "Key provisioned in Secret %s", f.Secret.Name)
}

// BindKey records that st's verification state belongs to the key in Secret name with uid. A key other than
// the one recorded (the first, or a replacement after the Secret was deleted) starts a fresh pending
// enrollment: confirmation, counters and lock belong to the key they were recorded for. It reports whether
// it replaced an earlier key.
func BindKey(st *v1alpha1.UserEnrollmentStatus, name, uid string) (replaced bool) {
	st.SecretName = name
	if st.SecretUID == uid {
		return false
	}
	replaced = st.SecretUID != ""
	Reset(st)
	st.SecretUID = uid
	return replaced
}

// Confirm records that a first valid code confirmed st at now. A confirmed enrollment stays confirmed. It
// reports whether st changed.
func Confirm(st *v1alpha1.UserEnrollmentStatus, now time.Time) (changed bool) {
	if st.ConfirmedAt != nil {
		return false
	}
	st.ConfirmedAt = stamp(now)
	return true
}

// Expiry is when e, a self-enrollment never confirmed, expires under policy p: its creation plus the
// policy's selfEnrollment.pendingExpirySeconds. ok is false for an enrollment that never expires by itself:
// one an administrator created (not labelled self-enrolled), one confirmed, and one an administrator
// reissued a key for.
func Expiry(e *v1alpha1.UserEnrollment, p *v1alpha1.ResolvedPolicy) (at time.Time, ok bool) {
	if p == nil || e.Labels[v1alpha1.LabelSelfEnrolled] != "true" || e.Status.ConfirmedAt != nil ||
		e.Status.LastHandledReissue != "" {
		return time.Time{}, false
	}
	return e.CreationTimestamp.Add(time.Duration(p.SelfEnrollment.PendingExpirySeconds) * time.Second), true
}
