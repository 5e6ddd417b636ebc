package controllers

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/changes"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
)

// EnrollmentReconciler provisions each UserEnrollment's key Secret and keeps its conditions true: policy
// checks, duplicate users, lock expiry and the administrator's unlock annotation.
type EnrollmentReconciler struct {
	client.Client
	// APIReader reads what the manager does not cache: whole enrollments, Secrets and state Leases.
	APIReader client.Reader
	// Namespace is the one namespace whose Secrets are followed; all when empty.
	Namespace string
	Recorder  recorder.EventRecorder
	Clock     clock.PassiveClock
	// QueueClock, when set, is the clock the work queue waits on for RequeueAfter (a test's fake clock).
	QueueClock clock.WithTicker
	// Rand is the source of keys; crypto/rand when nil.
	Rand io.Reader
	// ProvenanceKey signs the Secrets the manager creates (see render.Provenance), so that it adopts no other.
	ProvenanceKey []byte
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=userenrollments,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=userenrollments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=userenrollments/finalizers,verbs=update
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=twofactorpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;update

// Reconcile brings one enrollment's Secret and status up to date: it gathers the facts (policy, duplicates,
// Secret), provisions a key when the rules say so, derives the conditions from the facts, and handles locks.
func (r *EnrollmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	e := &v1alpha1.UserEnrollment{}
	// From the API server: the cache holds only what the watches' handlers read (see leanEnrollment).
	if err := r.APIReader.Get(ctx, req.NamespacedName, e); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !e.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := e.Status.DeepCopy()
	now := r.Clock.Now()
	var notes []note // Events announced only once the status that records them is written
	gone := false    // the enrollment expired: there is no status left to write
	defer func() {
		if gone {
			return
		}
		enrollment.SetEnrolled(&e.Status, e.Generation)
		if err == nil {
			e.Status.ObservedGeneration = e.Generation
		}
		changed := !equality.Semantic.DeepEqual(before, &e.Status)
		var recorded bool
		if recorded, res, err = recordStatus(ctx, r.Client, e, changed, res, err); recorded {
			for _, n := range notes {
				r.Recorder.Eventf(e, nil, n.kind, n.reason, n.action, "%s", n.message)
			}
		}
	}()

	facts, err := r.facts(ctx, e)
	if err != nil {
		return ctrl.Result{}, err // a fact that could not be read decides nothing: Ready stays as it was
	}
	// An enrollment about to get its first key learns whether its Secret exists by creating it.
	if facts.Policy != nil && (e.Status.SecretUID != "" || !enrollment.NeedsKey(facts)) {
		if facts.Secret, err = r.secret(ctx, e); err != nil {
			return ctrl.Result{}, err
		}
	}
	gone, expiresIn, err := r.expire(ctx, e, facts.Policy, now)
	if gone || err != nil {
		return ctrl.Result{}, err
	}
	if facts.Policy != nil { // else the Secret was not read: nothing is known of it
		facts.KeyLost = enrollment.KeyLost(&e.Status, facts.Secret)
		if enrollment.Reissue(&e.Status, e.Annotations[v1alpha1.AnnotationReissue], facts.KeyLost) {
			facts.KeyLost = false
		}
	}
	if facts.KeyLost && !readyReasonIs(before.Conditions, v1alpha1.ReasonKeyLost) {
		notes = append(notes, note{corev1.EventTypeWarning, v1alpha1.EventReasonKeyLost, "Provision",
			"The key Secret " + e.Status.SecretName + " of this confirmed enrollment is gone: codes are refused until an " +
				"administrator deletes the enrollment or sets the " + v1alpha1.AnnotationReissue + " annotation"})
	}
	if err = r.provision(ctx, e, &facts); err != nil && !facts.ProvisionFailed {
		return ctrl.Result{}, err // a fact that could not be read decides nothing
	}
	if s := facts.Secret; s != nil && !s.Owned && !readyReasonIs(before.Conditions, v1alpha1.ReasonSecretConflict) {
		notes = append(notes, note{corev1.EventTypeWarning, v1alpha1.ReasonSecretConflict, "Provision",
			"Secret " + s.Name + " exists and was not created for this enrollment by kube2fa: it is not used as its key"})
	}
	if s := facts.Secret; s != nil && s.Owned && !facts.KeyLost {
		if enrollment.BindKey(&e.Status, s.Name, s.UID) {
			notes = append(notes, note{corev1.EventTypeWarning, v1alpha1.EventReasonKeyReplaced, "Provision",
				"Secret " + e.Status.SecretName + " was replaced with a new key: the enrollment must be confirmed again"})
		}
		if s.NoQRCode {
			notes = append(notes, note{corev1.EventTypeNormal, v1alpha1.EventReasonNoQRCode, "Provision",
				"Secret " + s.Name + " holds the key and its otpauth URI but no QR code: the URI is too long for one"})
		}
		// A bound key's method is its own snapshot's, whatever the policy's methods say now.
		if s.Method != "" {
			e.Status.Method = s.Method
		}
		facts.Method = cmp.Or(e.Status.Method, facts.Method)
	} else if facts.Policy != nil {
		e.Status.Method = facts.Method
	}
	meta.SetStatusCondition(&e.Status.Conditions, enrollment.Ready(facts))
	if err != nil {
		return ctrl.Result{}, err
	}
	res, lockNotes, err := r.handleLock(ctx, e, now)
	notes = append(notes, lockNotes...)
	if err != nil {
		return ctrl.Result{}, err
	}
	if expiresIn > 0 && (res.RequeueAfter == 0 || expiresIn < res.RequeueAfter) {
		res.RequeueAfter = expiresIn // look again when the self-enrollment expires
	}
	return res, nil
}

// expire deletes e when it is a self-enrollment that was never confirmed in time (see enrollment.Expiry), and
// reports that it is gone; otherwise it returns how long until it expires, 0 when it never does. The
// deletion is guarded by e's resourceVersion: an enrollment confirmed meanwhile is not deleted.
func (r *EnrollmentReconciler) expire(ctx context.Context, e *v1alpha1.UserEnrollment, p *v1alpha1.ResolvedPolicy,
	now time.Time) (gone bool, expiresIn time.Duration, err error) {
	at, ok := enrollment.Expiry(e, p)
	switch {
	case !ok:
		return false, 0, nil
	case now.Before(at):
		return false, at.Sub(now), nil
	}
	if err := r.Delete(ctx, e, client.Preconditions{UID: &e.UID, ResourceVersion: &e.ResourceVersion}); err != nil {
		return apierrors.IsNotFound(err), 0, client.IgnoreNotFound(err)
	}
	r.Recorder.Eventf(e, nil, corev1.EventTypeNormal, v1alpha1.EventReasonExpired, "Expire",
		"Self-enrollment not confirmed within %ds: deleted with its key", p.SelfEnrollment.PendingExpirySeconds)
	return true, 0, nil
}

// note is an Event to emit about an enrollment. The first provisioning of a key is not one: the Ready
// condition records it, and at thousands of enrollments an Event each would be a third of all writes.
type note struct{ kind, reason, action, message string }

// facts reads what decides an enrollment's Ready condition, but its Secret (see secret): its policy and an
// enrollment of the same user that precedes it. Any read that fails is returned as an error.
func (r *EnrollmentReconciler) facts(ctx context.Context, e *v1alpha1.UserEnrollment) (enrollment.Facts, error) {
	f := enrollment.Facts{Generation: e.Generation, PolicyName: e.Spec.PolicyRef.Name, Method: e.Spec.Method}
	policy := &v1alpha1.TwoFactorPolicy{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Spec.PolicyRef.Name}, policy); {
	case apierrors.IsNotFound(err):
		return f, nil
	case err != nil:
		return f, fmt.Errorf("getting twofactorpolicy: %w", err)
	}
	resolved := policy.Resolve()
	f.Policy, f.Method = &resolved, resolved.MethodFor(e.Spec.Method)

	items, err := enrollmentsOfUser(ctx, r, e.Namespace, enrollment.KeyOf(e))
	if err != nil {
		return f, fmt.Errorf("listing userenrollments: %w", err)
	}
	if w := enrollment.Winner(items); w != nil && w.UID != e.UID && enrollment.Precedes(w, e) {
		f.Duplicate = w.Name
	}
	return f, nil
}

// secret reads the facts of the Secret under e's Secret name, nil when there is none. Only its metadata is
// read, from the API server: the key is written once and never read back here, and no Secret is cached.
func (r *EnrollmentReconciler) secret(ctx context.Context, e *v1alpha1.UserEnrollment) (*enrollment.SecretFacts, error) {
	secret := secretMeta()
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}, secret); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("getting secret: %w", err)
	}
	return secretFacts(secret, e), nil
}

// secretFacts are the facts of Secret s for enrollment e.
func secretFacts(s metav1.Object, e *v1alpha1.UserEnrollment) *enrollment.SecretFacts {
	return &enrollment.SecretFacts{Name: s.GetName(), UID: string(s.GetUID()), Owned: metav1.IsControlledBy(s, e)}
}

// provision creates the key Secret when the rules say one is needed. A Secret that the enrollment's state is
// not bound to yet (found, not just created: the manager may have crashed, or lost a status write, after
// creating it) is the enrollment's only when it carries the manager's provenance: anyone who may create
// Secrets could plant one with kube2fa's labels and a forged owner, and would know its key.
func (r *EnrollmentReconciler) provision(ctx context.Context, e *v1alpha1.UserEnrollment, f *enrollment.Facts) error {
	if enrollment.NeedsKey(*f) {
		s, created, err := r.createSecret(ctx, e, *f.Policy, f.Method)
		if err != nil {
			f.ProvisionFailed = true
			return err
		}
		if f.Secret = s; created {
			return nil
		}
	}
	s := f.Secret
	if s == nil || !s.Owned || s.UID == e.Status.SecretUID {
		return nil // none, not even claiming to be ours, or the very key the state belongs to
	}
	full := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: s.Name}, full); err != nil {
		return fmt.Errorf("getting secret to check its provenance: %w", err)
	}
	s.Owned = string(full.UID) == s.UID && render.ProvenanceHolds(r.ProvenanceKey, full, e.UID)
	if s.Owned {
		s.Method = v1alpha1.Method(full.Data[render.SecretKeyMethod])
	}
	return nil
}

// createSecret generates a key and creates the enrollment's Secret, with the manager's provenance. When a
// Secret of that name exists already, it returns that one, and created is false: an existing key is never
// replaced.
func (r *EnrollmentReconciler) createSecret(ctx context.Context, e *v1alpha1.UserEnrollment,
	p v1alpha1.ResolvedPolicy, method v1alpha1.Method) (_ *enrollment.SecretFacts, created bool, _ error) {
	rnd := r.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	key, err := otp.GenerateSecret(int(p.SecretBytes), rnd)
	if err != nil {
		return nil, false, fmt.Errorf("generating key: %w", err)
	}
	secret, err := render.OTPSecret(e, render.ParamsFor(p, method), p.Issuer, key)
	if err != nil {
		return nil, false, err
	}
	metav1.SetMetaDataAnnotation(&secret.ObjectMeta, v1alpha1.AnnotationProvenance, render.Provenance(r.ProvenanceKey, secret, e.UID))
	if err := r.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			existing := secretMeta()
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(secret), existing); err != nil {
				return nil, false, fmt.Errorf("getting existing secret: %w", err)
			}
			return secretFacts(existing, e), false, nil
		}
		return nil, false, fmt.Errorf("creating secret: %w", err)
	}
	logf.FromContext(ctx).Info("Created Secret", "secret", klog.KObj(secret), "method", method)
	f := secretFacts(secret, e)
	f.Method, f.NoQRCode = method, !render.HasQRCode(secret)
	return f, true, nil
}

// secretMeta is an empty Secret of which only metadata is read.
func secretMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// handleLock acts on the administrator's unlock annotation and keeps the Locked condition true to the
// enrollment's state Lease, which the verifier writes: it reads the Lease only when there is an unlock to
// handle or a lock to watch end (the Locked condition shows one), and schedules the next pass for when the
// lock ends. Verification itself never brings the manager here.
func (r *EnrollmentReconciler) handleLock(ctx context.Context, e *v1alpha1.UserEnrollment, now time.Time) (ctrl.Result, []note, error) {
	unlock := e.Annotations[v1alpha1.AnnotationUnlock]
	wasLocked := meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionLocked)
	if !wasLocked && (unlock == "" || unlock == e.Status.LastHandledUnlock) {
		if meta.FindStatusCondition(e.Status.Conditions, v1alpha1.ConditionLocked) == nil || e.Status.SecretUID == "" {
			enrollment.SetLocked(&e.Status, nil, e.Generation, now)
		}
		return ctrl.Result{}, nil, nil
	}
	lease := &coordinationv1.Lease{}
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: e.Namespace,
		Name: render.StateLeaseName(e.Spec.PolicyRef.Name, e.Spec.User)}, lease); {
	case apierrors.IsNotFound(err):
		lease = nil
	case err != nil:
		return ctrl.Result{}, nil, fmt.Errorf("getting state lease: %w", err)
	}
	recorded, err := render.RecordedState(lease, e)
	if err != nil {
		return ctrl.Result{}, nil, err
	}
	if recorded == nil {
		lease = nil // none, or another enrollment's: nothing of this one's to clear
	}
	st := enrollment.StateOf(recorded, e.Status.SecretUID)
	var notes []note
	if enrollment.Unlock(&e.Status, &st, unlock) {
		if lease != nil {
			updated := lease.DeepCopy()
			if err := render.SetState(updated, st); err != nil {
				return ctrl.Result{}, nil, err
			}
			// Guarded by the version read: a decision recorded meanwhile makes this pass start again.
			if err := r.Update(ctx, updated); err != nil {
				return ctrl.Result{}, nil, fmt.Errorf("clearing the lock in state lease: %w", err)
			}
		}
		notes = append(notes, note{corev1.EventTypeNormal, v1alpha1.EventReasonUnlocked, "Unlock", "Unlocked by annotation " + v1alpha1.AnnotationUnlock + "; failures reset"})
	} else if wasLocked && !enrollment.IsLocked(&st, now) {
		notes = append(notes, note{corev1.EventTypeNormal, v1alpha1.EventReasonLockExpired, "Unlock", "Lock ended after its throttle time; failures reset"})
	}
	enrollment.SetLocked(&e.Status, &st, e.Generation, now)
	if wait := enrollment.RetryAfter(&st, now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, notes, nil
	}
	return ctrl.Result{}, notes, nil
}

// SetupWithManager registers the reconciler and its watches.
func (r *EnrollmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	md, err := metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return fmt.Errorf("creating metadata client: %w", err)
	}
	keys := newKeyChanges(changes.SecretMetadata(md, r.Namespace, render.Selector("").String()), r.all)
	return ctrl.NewControllerManagedBy(mgr).
		Named("userenrollment").
		// Verification facts the verifier records (steps, counters, successes, failures) need nothing from
		// the manager: during a login storm it would otherwise run a pass per decision.
		For(&v1alpha1.UserEnrollment{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(ev event.UpdateEvent) bool {
			return needsManager(ev.ObjectOld.(*v1alpha1.UserEnrollment), ev.ObjectNew.(*v1alpha1.UserEnrollment))
		}})).
		// A change of a key Secret (its deletion makes a confirmed enrollment's key lost) brings its enrollment.
		WatchesRawSource(keys).
		// A policy change can make enrollments ready, or not.
		Watches(&v1alpha1.TwoFactorPolicy{}, handler.EnqueueRequestsFromMapFunc(r.enrollmentsOfPolicy),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// When an enrollment of a user comes, gets its key or goes, the others of that user may become, or
		// stop being, duplicates.
		Watches(&v1alpha1.UserEnrollment{}, handler.EnqueueRequestsFromMapFunc(r.sameUser),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(ev event.UpdateEvent) bool {
				return ev.ObjectOld.(*v1alpha1.UserEnrollment).Status.SecretUID != ev.ObjectNew.(*v1alpha1.UserEnrollment).Status.SecretUID
			}})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles, NewQueue: r.newQueue()}).
		Complete(r)
}

// newQueue returns a work queue that waits on QueueClock, or nil (controller-runtime's default queue).
func (r *EnrollmentReconciler) newQueue() func(string, workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	if r.QueueClock == nil {
		return nil
	}
	return func(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
		return workqueue.NewTypedRateLimitingQueueWithConfig(rl,
			workqueue.TypedRateLimitingQueueConfig[reconcile.Request]{Name: name, Clock: r.QueueClock})
	}
}

// needsManager reports whether a change of an enrollment is one the manager acts on: its spec, the unlock
// and reissue annotations, deletion, a lock (to show its end when its throttle ends) or a status it did not
// expect.
func needsManager(old, cur *v1alpha1.UserEnrollment) bool {
	return old.Generation != cur.Generation ||
		old.Annotations[v1alpha1.AnnotationUnlock] != cur.Annotations[v1alpha1.AnnotationUnlock] ||
		old.Annotations[v1alpha1.AnnotationReissue] != cur.Annotations[v1alpha1.AnnotationReissue] ||
		!cur.DeletionTimestamp.IsZero() ||
		meta.IsStatusConditionTrue(old.Status.Conditions, v1alpha1.ConditionLocked) !=
			meta.IsStatusConditionTrue(cur.Status.Conditions, v1alpha1.ConditionLocked) ||
		old.Status.SecretUID != cur.Status.SecretUID || old.Status.ObservedGeneration != cur.Status.ObservedGeneration
}

// enrollmentsOfPolicy brings every enrollment of a policy whose spec changed. Policy changes are rare: an index
// by policy would cost more (two set entries an enrollment) than filtering the namespace's enrollments.
func (r *EnrollmentReconciler) enrollmentsOfPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.UserEnrollmentList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list userenrollments of policy", "policy", klog.KObj(o))
		return nil
	}
	return requestsFor(slices.DeleteFunc(list.Items, func(e v1alpha1.UserEnrollment) bool { return e.Spec.PolicyRef.Name != o.GetName() }))
}

// all is a request for every enrollment the manager watches.
func (r *EnrollmentReconciler) all(ctx context.Context) ([]reconcile.Request, error) {
	var list v1alpha1.UserEnrollmentList
	err := r.List(ctx, &list, client.InNamespace(r.Namespace), client.UnsafeDisableDeepCopy)
	return requestsFor(list.Items), err
}

func (r *EnrollmentReconciler) sameUser(ctx context.Context, o client.Object) []reconcile.Request {
	e := o.(*v1alpha1.UserEnrollment)
	items, err := enrollmentsOfUser(ctx, r, e.Namespace, enrollment.KeyOf(e))
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list userenrollments of user", "userenrollment", klog.KObj(o))
		return nil
	}
	return requestsFor(items)
}
