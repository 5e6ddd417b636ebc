package verifier

import (
	"context"
	"errors"
	"maps"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/lru"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// DefaultRememberedStates bounds how many users' state Leases a replica remembers: a few hundred bytes each.
const DefaultRememberedStates = 10000

// errStateConflict: another replica, or the manager, wrote the state first; decide again on what it wrote.
var errStateConflict = errors.New("state conflict")

// LeaseClient is what the verifier does with state Leases: the typed client of the policy's namespace
// (kubernetes.Interface's CoordinationV1().Leases(namespace)), speaking protobuf.
type LeaseClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// source is where a decision reads a user's state from.
type source int

const (
	// memory: what this replica last wrote or read of the Lease, when it has that and nobody else was seen
	// writing the Lease; else as watchCache. Deciding on it costs no read at all; the guarded write that
	// follows catches a version someone else wrote meanwhile.
	memory source = iota
	// watchCache: a read the API server may serve from its watch cache: cheap, and a version behind only
	// for a moment, which the guarded write catches too.
	watchCache
	// quorum: a read from etcd, after a write conflict.
	quorum
)

// userState is a user's verification state as a decision reads it: the Lease holding it (nil while none
// exists), the state for the enrollment's key, and whether it came from memory, unchecked.
type userState struct {
	lease      *coordinationv1.Lease
	state      v1alpha1.VerificationState
	remembered bool
}

// knownLease is the newest version of a state Lease this replica knows. written is true when it wrote that
// version on top of version base ("" when it created the Lease), for read-your-writes over a lagging read;
// contended is true once another writer was seen, and memory is not decided on alone until a read shows
// this replica's own last write again.
type knownLease struct {
	lease *coordinationv1.Lease
	// recorded is the state lease holds, parsed once (nil when not parsed, or not the state of an enrollment).
	recorded  *v1alpha1.VerificationState
	written   bool
	base      string
	contended bool
}

// readState reads the verification state of enrollment e from where src says.
func (v *Verifier) readState(ctx context.Context, e *v1alpha1.UserEnrollment, src source) (userState, error) {
	name := render.StateLeaseName(v.Policy, e.Spec.User)
	k, known := v.known(name)
	if src == memory && known && !k.contended {
		return v.stateIn(k, e, true)
	}
	opts := metav1.GetOptions{ResourceVersion: "0"}
	if src == quorum {
		opts.ResourceVersion = ""
	}
	l, err := v.Leases.Get(ctx, name, opts)
	switch {
	case apierrors.IsNotFound(err):
		l = nil
	case err != nil:
		return userState{}, apiFailure(err, "reading the enrollment's state failed")
	default:
		withoutManagedFields(l)
	}
	if src != quorum && known && k.written && ((l == nil && k.base == "") || (l != nil && l.ResourceVersion == k.base)) {
		return v.stateIn(k, e, false) // the read does not show this replica's own write yet
	}
	if l == nil {
		v.remembered().Remove(name)
	}
	// A read showing the very version this replica wrote last: nobody else wrote since (the user's requests
	// reach this replica alone again), so its next decision is taken on its memory again.
	mine := k.written && l != nil && k.lease != nil && l.ResourceVersion == k.lease.ResourceVersion
	return v.stateIn(knownLease{lease: l, contended: k.contended && !mine}, e, false)
}

// stateIn is the state that the known Lease k holds for e's key (none when k holds no Lease, or another
// enrollment's), parsed at most once: a Lease read is remembered with its parsed state.
func (v *Verifier) stateIn(k knownLease, e *v1alpha1.UserEnrollment, remembered bool) (userState, error) {
	l := k.lease
	if l == nil || !metav1.IsControlledBy(l, e) { // none yet, or another enrollment's: nothing for this key
		return userState{lease: l, state: enrollment.StateOf(nil, e.Status.SecretUID), remembered: remembered}, nil
	}
	if k.recorded == nil {
		st, err := render.ParseState(l, e)
		if err != nil {
			return userState{}, unavailable("the enrollment's state cannot be read: %v", err)
		}
		k.recorded, k.lease = st, withoutState(l)
		v.remembered().Add(l.Name, k)
	}
	return userState{lease: l, state: enrollment.StateOf(k.recorded, e.Status.SecretUID), remembered: remembered}, nil
}

// withoutManagedFields drops l's managed fields (l may be nil), as the replica remembers it: it never reads
// them, and an update without them keeps the server's.
func withoutManagedFields(l *coordinationv1.Lease) *coordinationv1.Lease {
	if l != nil {
		l.ManagedFields = nil
	}
	return l
}

// withoutState is l without its state annotation, once the state is remembered parsed: a write renders it
// anew (render.SetState). l is shared, so the copy is shallow but for the annotations.
func withoutState(l *coordinationv1.Lease) *coordinationv1.Lease {
	lean := *l
	lean.Annotations = make(map[string]string, len(l.Annotations))
	for k, v := range l.Annotations {
		if k != v1alpha1.AnnotationState {
			lean.Annotations[k] = v
		}
	}
	return &lean
}

// known returns what this replica knows of the state Lease name.
func (v *Verifier) known(name string) (knownLease, bool) {
	k, ok := v.remembered().Get(name)
	if !ok {
		return knownLease{}, false
	}
	return k.(knownLease), true
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
		l := *read.lease // shared with what the replica remembers: only the annotations change, in a map of its own
		l.Annotations = maps.Clone(read.lease.Annotations)
		if rerr := render.SetState(&l, st); rerr != nil {
			return unavailable("%v", rerr)
		}
		base = read.lease.ResourceVersion
		written, err = v.Leases.Update(ctx, &l, metav1.UpdateOptions{})
	}
	name := render.StateLeaseName(v.Policy, e.Spec.User)
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err):
		// Someone else writes this Lease too (another replica, the manager): from now on this replica reads
		// before it decides, rather than pay a refused write each time.
		v.remembered().Add(name, knownLease{contended: true})
		return errStateConflict
	case err != nil:
		return apiFailure(err, "recording the decision failed")
	}
	delete(withoutManagedFields(written).Annotations, v1alpha1.AnnotationState) // remembered parsed, as st
	k, _ := v.known(name)
	if k.written && k.lease != nil && k.lease.ResourceVersion == base {
		base = k.base // on top of an earlier write of this replica that reads do not show yet: that one's base
	}
	v.remembered().Add(name, knownLease{lease: written, recorded: &st, written: true, base: base, contended: k.contended})
	return nil
}

// dropForeignState deletes a state Lease controlled by something other than the enrollment deciding, once
// its controller is gone (the user's previous enrollment, deleted): exactly what the garbage collector
// would do. The deletion is guarded by the Lease's UID and version. While its controller exists (another
// enrollment of the same user, which this replica does not see as the user's yet), it is left alone.
func (v *Verifier) dropForeignState(ctx context.Context, l *coordinationv1.Lease) error {
	if owner := render.ControllingEnrollment(l); owner != nil {
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

// project writes e's conditions when st makes them show something else (a confirmation, a lock, the end of
// a lock): the one more write a transition costs. With confirm, it records the confirmation too, for the key
// st belongs to; the confirmation is not made unless this write succeeds.
func (v *Verifier) project(ctx context.Context, e *v1alpha1.UserEnrollment, st v1alpha1.VerificationState,
	confirm bool, now time.Time) error {
	d := v.directory()
	for range maxRetries(v.MaxRetries) {
		mark := d.reading()
		if confirm && e.Status.SecretUID != st.Key {
			return unavailable("the enrollment's key was replaced meanwhile; retry")
		}
		status := e.Status.DeepCopy() // e is shared: what the replica remembers
		if !enrollment.Project(status, &st, confirm, e.Generation, now) {
			return nil
		}
		updated := e.DeepCopy()
		updated.Status = *status
		err := v.Client.Status().Update(ctx, updated)
		if err == nil {
			d.settle(e.Spec.User, mark, lean(updated))
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
