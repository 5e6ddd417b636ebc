package verifier

import (
	"cmp"
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// State is an enrollment's state as the HTTP API reports it.
type State string

const (
	// StateNone: the user has no enrollment under the policy.
	StateNone State = "None"
	// StateProvisioning: the user's enrollment waits for the manager's key.
	StateProvisioning State = "Provisioning"
	// StatePending: the key exists; the user has not confirmed it with a first code.
	StatePending State = "Pending"
	// StateConfirmed: a first code confirmed the enrollment.
	StateConfirmed State = "Confirmed"
	// StateLocked: wrong codes locked the enrollment.
	StateLocked State = "Locked"
)

// Enrollment describes a user's enrollment. Provisioning material (the otpauth URI and its QR code) is
// filled in only by Enroll, the POST: never by Get, so that nothing that can only read (a GET-only SSRF in
// the application, another container of the pod) obtains a user's key.
type Enrollment struct {
	User       string          `json:"user"`
	Method     v1alpha1.Method `json:"method,omitempty"`
	State      State           `json:"state"`
	OTPAuthURI string          `json:"otpauthURI,omitempty"`
	QRPNG      []byte          `json:"qrPNG,omitempty"`
}

// Get reports a user's enrollment: GET /v1/enrollments/{user}.
func (v *Verifier) Get(ctx context.Context, user string) (Enrollment, error) {
	e, err := v.enrollment(ctx, user)
	if err != nil || e == nil {
		return Enrollment{User: user, State: StateNone}, err
	}
	locked, err := v.locked(ctx, e)
	if err != nil {
		return Enrollment{}, err
	}
	out := Enrollment{User: user, Method: e.Status.Method}
	switch {
	case locked:
		out.State = StateLocked
	case e.Status.ConfirmedAt != nil:
		out.State = StateConfirmed
	case e.Status.SecretUID == "":
		out.State = StateProvisioning
	default:
		out.State = StatePending
	}
	return out, nil
}

// locked reports whether e's verification state locks it now.
func (v *Verifier) locked(ctx context.Context, e *v1alpha1.UserEnrollment) (bool, error) {
	if e.Status.SecretUID == "" {
		return false, nil // no key, no state
	}
	read, err := v.readState(ctx, e, watchCache)
	if err != nil {
		return false, err
	}
	return enrollment.IsLocked(&read.state, v.Clock.Now()), nil
}

// Enroll starts self-enrollment: POST /v1/enrollments. It creates the user's UserEnrollment, waits for the
// manager to provision its key, and returns the provisioning material. created is false when a pending
// enrollment already existed.
func (v *Verifier) Enroll(ctx context.Context, user string, method v1alpha1.Method) (out Enrollment, created bool, err error) {
	p, err := v.resolvedPolicy(ctx)
	if err != nil {
		return out, false, err
	}
	if p.Mode == v1alpha1.ModeDisabled {
		return out, false, disabled(v.Policy)
	}
	if p.SelfEnrollment.Mode == v1alpha1.SelfEnrollmentAdminOnly {
		return out, false, refuse(ErrSelfEnrollmentClosed,
			"policy %s lets only administrators enroll users; ask yours for your QR code", v.Policy)
	}
	method = p.MethodFor(method)
	if !p.Allows(method) {
		return out, false, methodNotAllowed(v.Policy, method)
	}
	e, err := v.enrollment(ctx, user)
	if err != nil {
		return out, false, err
	}
	if e == nil {
		if err := v.mayCreate(ctx); err != nil {
			return out, false, err
		}
		if e, err = v.create(ctx, user, method); err != nil {
			return out, false, err
		}
		created = true
		v.event(e, corev1.EventTypeNormal, v1alpha1.EventReasonSelfEnrolled,
			"Created by self-enrollment through the verifier: whoever confirms it first holds this user's second factor")
	}
	locked, err := v.locked(ctx, e)
	switch {
	case err != nil:
		return out, created, err
	case e.Status.ConfirmedAt != nil:
		return out, false, refuse(ErrAlreadyConfirmed, "the user is already enrolled")
	case locked:
		return out, false, refuse(ErrLocked, "the enrollment is locked by wrong codes")
	case e.Spec.Method != "" && e.Spec.Method != method:
		return out, false, refuse(ErrOtherMethodPending, "a pending %s enrollment exists for this user", e.Spec.Method)
	}
	if e, err = v.awaitKey(ctx, e); err != nil {
		return out, created, err
	}
	out = Enrollment{User: user, Method: e.Status.Method, State: StatePending}
	return out, created, v.material(ctx, e, &out)
}

// mayCreate refuses a new self-enrollment beyond this replica's rate or the policy's number of pending ones,
// as the manager last counted them in the policy's status (about a second behind: the rate bounds what one
// replica creates meanwhile).
func (v *Verifier) mayCreate(ctx context.Context) error {
	if v.SelfEnrollments != nil && !v.SelfEnrollments.Allow() {
		return refuse(ErrSelfEnrollmentRate, "too many new enrollments at once; retry in a moment")
	}
	if v.MaxPending <= 0 {
		return nil
	}
	p := &v1alpha1.TwoFactorPolicy{}
	if err := v.Cache.Get(ctx, client.ObjectKey{Namespace: v.Namespace, Name: v.Policy}, p); err != nil {
		return unavailable("TwoFactorPolicy %s is not loaded: %v", v.Policy, apiReason(err))
	}
	pending := 0
	if c := p.Status.Enrollments; c != nil {
		pending = int(c.SelfEnrolledPending)
	}
	if pending >= v.MaxPending {
		return refuse(ErrTooManyPending, "policy %s has %d unconfirmed self-enrollments, the most allowed; retry later", v.Policy, pending)
	}
	return nil
}

// create creates the user's enrollment under its derived name (see enrollment.Name), or finds the one
// another replica created at the same moment. When someone else took that name (an administrator can name an
// enrollment anything), it creates the enrollment under a generated name instead of refusing the user.
func (v *Verifier) create(ctx context.Context, user string, method v1alpha1.Method) (*v1alpha1.UserEnrollment, error) {
	e := &v1alpha1.UserEnrollment{
		ObjectMeta: metav1.ObjectMeta{Namespace: v.Namespace, Name: enrollment.Name(v.Policy, user),
			Labels: map[string]string{v1alpha1.LabelSelfEnrolled: "true"}},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: v.Policy}, User: user, Method: method},
	}
	err := v.Client.Create(ctx, e)
	if apierrors.IsAlreadyExists(err) {
		existing := &v1alpha1.UserEnrollment{}
		if err := v.Client.Get(ctx, client.ObjectKeyFromObject(e), existing); err != nil {
			return nil, apiFailure(err, "reading the existing enrollment failed")
		}
		if existing.Spec.User == user && existing.Spec.PolicyRef.Name == v.Policy {
			if !existing.DeletionTimestamp.IsZero() { // its key goes with it: never hand that out
				return nil, unavailable("the user's previous enrollment is still being deleted; retry")
			}
			return existing, nil
		}
		e.GenerateName, e.Name = e.Name+"-", ""
		err = v.Client.Create(ctx, e)
	}
	if err != nil {
		return nil, apiFailure(err, "creating the enrollment failed")
	}
	return e, nil
}

// awaitKey waits until the manager has provisioned e's key, bounded by ProvisionTimeout, reading e and its
// Secret from the API server. When the manager says that no key will come (the policy is Disabled or does
// not allow the method, which this replica's view of the policy may not show yet), it answers that at once.
func (v *Verifier) awaitKey(ctx context.Context, e *v1alpha1.UserEnrollment) (*v1alpha1.UserEnrollment, error) {
	cur := &v1alpha1.UserEnrollment{}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, cmp.Or(v.ProvisionTimeout, 10*time.Second), true,
		func(ctx context.Context) (bool, error) {
			if err := v.Client.Get(ctx, client.ObjectKeyFromObject(e), cur); err != nil {
				return false, nil
			}
			if err := noKeyComing(cur); err != nil {
				return false, err
			}
			if cur.Status.SecretUID == "" {
				return false, nil
			}
			_, _, err := v.key(ctx, cur)
			return err == nil, nil
		})
	if errors.Is(err, ErrDisabled) || errors.Is(err, ErrMethodNotAllowed) {
		return nil, err
	}
	if err != nil {
		return nil, unavailable("the enrollment's key was not provisioned in time (%s); retry", readyReason(cur))
	}
	return cur, nil
}

// noKeyComing is why the manager will not provision e's key, as its current Ready condition says, or nil.
func noKeyComing(e *v1alpha1.UserEnrollment) error {
	c := meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.ObservedGeneration != e.Generation {
		return nil
	}
	switch c.Reason {
	case v1alpha1.ReasonPolicyDisabled:
		return disabled(e.Spec.PolicyRef.Name)
	case v1alpha1.ReasonMethodNotAllowed:
		return methodNotAllowed(e.Spec.PolicyRef.Name, e.Spec.Method)
	}
	return nil
}

// material fills in the provisioning URI and QR code of a pending enrollment, read from the API server: the
// replica remembers only what verification needs.
func (v *Verifier) material(ctx context.Context, e *v1alpha1.UserEnrollment, out *Enrollment) error {
	s := &corev1.Secret{}
	if err := v.Client.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}, s); err != nil {
		return apiFailure(err, "the enrollment's key is not available")
	}
	if string(s.UID) != e.Status.SecretUID {
		return unavailable("the enrollment's key is being replaced; retry")
	}
	out.OTPAuthURI = string(s.Data[render.SecretKeyURI])
	out.QRPNG = s.Data[render.SecretKeyQR]
	return nil
}
