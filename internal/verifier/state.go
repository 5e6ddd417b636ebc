package verifier

import (
	"context"
	"errors"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/lru"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// DefaultRememberedStates bounds how many state Leases a replica remembers having written, for
// read-your-writes: a few hundred bytes each.
const DefaultRememberedStates = 10000

// LeaseClient is what the verifier does with state Leases: the typed client of the policy's namespace
// (kubernetes.Interface's CoordinationV1().Leases(namespace)), speaking protobuf.
type LeaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// errStateConflict: another replica, or the manager, wrote the state first; decide again on what it wrote.
var errStateConflict = errors.New("state conflict")

// userState is a user's verification state as a decision reads it: the Lease holding it (nil while none
// exists), and the state for the enrollment's key.
type userState struct {
	lease *coordinationv1.Lease
	state v1alpha1.VerificationState
}

// writtenLease is a state Lease as this replica wrote it, on top of version base ("" when it created it).
type writtenLease struct {
	base  string
	lease *coordinationv1.Lease
}

// readState reads the verification state of enrollment e from its Lease. A read that may be served from the
// API server's watch cache (fresh false) is cheap and almost always current; the guarded write that follows
// catches the rare stale one, and the retry then reads fresh (quorum). A Lease this replica wrote and the
// read does not show yet stands in for the read: read-your-writes.
func (v *Verifier) readState(ctx context.Context, e *v1alpha1.UserEnrollment, fresh bool) (userState, error) {
	name := render.StateLeaseName(v.Policy, e.Spec.User)
	opts := metav1.GetOptions{ResourceVersion: "0"}
	if fresh {
		opts.ResourceVersion = ""
	}
	l, err := v.Leases.Get(ctx, name, opts)
	switch {
	case apierrors.IsNotFound(err):
		l = nil
	case err != nil:
		return userState{}, apiFailure(err, "reading the enrollment's state failed")
	}
	l = v.latestLease(name, l)
	if l == nil || !metav1.IsControlledBy(l, e) { // none yet, or another enrollment's: nothing for this key
		return userState{lease: l, state: enrollment.StateOf(nil, e.Status.SecretUID)}, nil
	}
	st, err := render.ParseState(l, e)
	if err != nil {
		return userState{}, unavailable("the enrollment's state cannot be read: %v", err)
	}
	return userState{lease: l, state: enrollment.StateOf(st, e.Status.SecretUID)}, nil
}

// writeState records st as e's verification state, guarded by the version read: it creates the Lease when
// none exists, and replaces a Lease left by an enrollment of the user that no longer exists (the garbage
// collector would delete it, in its own time). It returns errStateConflict when the Lease changed since it
// was read.
func (v *Verifier) writeState(ctx context.Context, e *v1alpha1.UserEnrollment, read userState, st v1alpha1.VerificationState) error {
	if read.lease != nil && !metav1.IsControlledBy(read.lease, e) {
		if err := v.dropForeignState(ctx, read.lease); err != nil {
			return err
		}
		read.lease = nil
	}
	var (
		written *coordinationv1.Lease
		err     error
		base    string
	)
	if read.lease == nil {
		l, rerr := render.StateLease(e, st)
		if rerr != nil {
			return unavailable("%v", rerr)
		}
		written, err = v.Leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		l := read.lease.DeepCopy()
		if rerr := render.SetState(l, st); rerr != nil {
			return unavailable("%v", rerr)
		}
		base = read.lease.ResourceVersion
		written, err = v.Leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err):
		v.remembered().Remove(render.StateLeaseName(v.Policy, e.Spec.User))
		return errStateConflict
	case err != nil:
		return apiFailure(err, "recording the decision failed")
	}
	v.rememberLease(base, written)
	return nil
}

// dropForeignState deletes a state Lease controlled by something other than the enrollment deciding, once
// its controller is gone (the user's previous enrollment, deleted): exactly what the garbage collector
// would do. The deletion is guarded by the Lease's UID and version. While its controller exists (another
// enrollment of the same user, which this replica does not see as the user's yet), it is left alone.
func (v *Verifier) dropForeignState(ctx context.Context, l *coordinationv1.Lease) error {
	owner := metav1.GetControllerOf(l)
	if owner != nil && owner.Kind == "UserEnrollment" {
		cur := &metav1.PartialObjectMetadata{}
		cur.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("UserEnrollment"))
		err := v.Client.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: owner.Name}, cur)
		switch {
		case err == nil && cur.UID == owner.UID:
			return unavailable("the state of another enrollment of this user is in the way; retry")
		case err != nil && !apierrors.IsNotFound(err):
			return apiFailure(err, "reading the enrollment the state belonged to failed")
		}
	}
	err := v.Leases.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{
		UID: ptr.To(l.UID), ResourceVersion: ptr.To(l.ResourceVersion)}})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return errStateConflict
	}
	return apiFailure(err, "removing the previous enrollment's state failed")
}

// rememberLease records a successful write of l, which replaced version base. A write on top of this
// replica's own earlier write, which reads do not show yet, keeps that write's base.
func (v *Verifier) rememberLease(base string, l *coordinationv1.Lease) {
	if w, ok := v.remembered().Get(l.Name); ok && w.(writtenLease).lease.ResourceVersion == base {
		base = w.(writtenLease).base
	}
	v.remembered().Add(l.Name, writtenLease{base: base, lease: l})
}

// latestLease returns this replica's own write of the Lease name when the read (nil: not found) still shows
// the version that write replaced; otherwise the read, and the write is forgotten.
func (v *Verifier) latestLease(name string, read *coordinationv1.Lease) *coordinationv1.Lease {
	w, ok := v.remembered().Get(name)
	if !ok {
		return read
	}
	if w := w.(writtenLease); (read == nil && w.base == "") || (read != nil && read.ResourceVersion == w.base) {
		return w.lease
	}
	v.remembered().Remove(name)
	return read
}

// project writes e's conditions when st makes them show something else (a confirmation, a lock, the end of
// a lock): the one more write a transition costs. With confirm, it records the confirmation too, for the key
// st belongs to; the confirmation is not made unless this write succeeds.
func (v *Verifier) project(ctx context.Context, e *v1alpha1.UserEnrollment, st v1alpha1.VerificationState,
	confirm bool, now time.Time) error {
	for range maxRetries(v.MaxRetries) {
		updated := e.DeepCopy()
		if confirm {
			if updated.Status.SecretUID != st.Key {
				return unavailable("the enrollment's key was replaced meanwhile; retry")
			}
			enrollment.Confirm(&updated.Status, now)
		}
		enrollment.SetEnrolled(&updated.Status, updated.Generation)
		enrollment.SetLocked(&updated.Status, &st, updated.Generation, now)
		if equality.Semantic.DeepEqual(e.Status, updated.Status) {
			return nil
		}
		err := v.Client.Status().Update(ctx, updated)
		if err == nil {
			v.remember(e.ResourceVersion, updated)
			return nil
		}
		if !apierrors.IsConflict(err) {
			return apiFailure(err, "recording the enrollment's conditions failed")
		}
		if e, err = v.reread(ctx, e); err != nil {
			return err
		}
	}
	return unavailable("too many concurrent changes of this enrollment; retry")
}

// remembered is the bounded memory of state Leases this replica wrote.
func (v *Verifier) remembered() *lru.Cache {
	v.statesOnce.Do(func() { v.states = lru.New(DefaultRememberedStates) })
	return v.states
}
