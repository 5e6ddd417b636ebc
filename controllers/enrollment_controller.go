package controllers

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	"github.com/kube2fa/kube2fa/internal/lockout"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
)

// EnrollmentReconciler provisions each UserEnrollment's key Secret and keeps its conditions true: policy
// checks, duplicate users, lock expiry and the administrator's unlock annotation.
type EnrollmentReconciler struct {
	client.Client
	// APIReader reads around the cache, to tell a foreign Secret (not cached) from cache lag.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Clock     clock.PassiveClock
	// Rand is the source of keys; crypto/rand when nil.
	Rand io.Reader
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int
}

// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=userenrollments,verbs=get;list;watch
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=userenrollments/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=userenrollments/finalizers,verbs=update
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=twofactorpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one enrollment's Secret and status up to date.
func (r *EnrollmentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	e := &v1alpha1.UserEnrollment{}
	if err := r.Get(ctx, req.NamespacedName, e); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !e.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	before := e.Status.DeepCopy()
	now := r.Clock.Now()
	var notes []note // Events announced only once the status that records them is written
	defer func() {
		lockout.SetConditions(&e.Status, e.Generation, now)
		e.Status.ObservedGeneration = e.Generation
		if !equality.Semantic.DeepEqual(before, &e.Status) {
			// Update carries the resourceVersion we read: the verifier shares this status, so a concurrent
			// write makes ours fail rather than overwrite it; then we decide again on what it wrote.
			if uerr := r.Status().Update(ctx, e); uerr != nil {
				if !apierrors.IsConflict(uerr) {
					err = fmt.Errorf("updating userenrollment status: %w", uerr)
				}
				res = ctrl.Result{RequeueAfter: conflictRetry}
				return
			}
		}
		for _, n := range notes {
			r.Recorder.Eventf(e, nil, n.kind, n.reason, n.action, "%s", n.message)
		}
	}()

	ready, err := r.provision(ctx, e)
	if ready.Type != "" {
		meta.SetStatusCondition(&e.Status.Conditions, ready)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if before.SecretUID != "" && e.Status.SecretUID != before.SecretUID {
		notes = append(notes, note{corev1.EventTypeWarning, "KeyReplaced", "Provision",
			"Secret " + e.Status.SecretName + " was replaced with a new key: the enrollment must be confirmed again"})
	}
	res, lockNotes := r.handleLock(e, now)
	notes = append(notes, lockNotes...)
	return res, nil
}

// conflictRetry is how soon a pass whose status write lost a race runs again.
const conflictRetry = 100 * time.Millisecond

// note is an Event to emit about an enrollment. The first provisioning of a key is not one: the Ready
// condition records it, and at thousands of enrollments an Event each would be a third of all writes.
type note struct{ kind, reason, action, message string }

// provision finds the enrollment's policy and makes sure its key Secret exists, returning the Ready
// condition. A key is generated only when no Secret exists: a live key is never replaced.
func (r *EnrollmentReconciler) provision(ctx context.Context, e *v1alpha1.UserEnrollment) (metav1.Condition, error) {
	notReady := func(reason, msg string, args ...any) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse,
			ObservedGeneration: e.Generation, Reason: reason, Message: fmt.Sprintf(msg, args...)}
	}
	policy := &v1alpha1.TwoFactorPolicy{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: e.Spec.PolicyRef.Name}, policy); err != nil {
		if apierrors.IsNotFound(err) {
			return notReady(v1alpha1.ReasonPolicyNotFound, "TwoFactorPolicy %q not found", e.Spec.PolicyRef.Name), nil
		}
		return metav1.Condition{}, fmt.Errorf("getting twofactorpolicy: %w", err)
	}
	resolved := policy.Resolve()
	method := resolved.MethodFor(e)
	e.Status.Method = method

	if older, err := r.olderDuplicate(ctx, e); err != nil || older != "" {
		return notReady(v1alpha1.ReasonDuplicateUser, "UserEnrollment %q already enrolls user %q under this policy",
			older, e.Spec.User), err
	}

	// Only the Secret's metadata is read (and cached): the key is written once and never read back here.
	var secret metav1.Object
	existing := secretMeta()
	err := r.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: render.SecretName(e.Name)}, existing)
	secret = existing
	if apierrors.IsNotFound(err) {
		switch {
		case resolved.Mode == v1alpha1.ModeDisabled:
			return notReady(v1alpha1.ReasonPolicyDisabled, "TwoFactorPolicy %q is Disabled: no key is provisioned", policy.Name), nil
		case !resolved.Allows(method):
			return notReady(v1alpha1.ReasonMethodNotAllowed, "TwoFactorPolicy %q does not allow method %q", policy.Name, method), nil
		}
		secret, err = r.createSecret(ctx, e, resolved, method)
	}
	if err != nil {
		return notReady(v1alpha1.ReasonNoKey, "Provisioning the key"), err
	}
	if !metav1.IsControlledBy(secret, e) {
		return notReady(v1alpha1.ReasonSecretConflict, "Secret %q exists and is not owned by this enrollment", secret.GetName()), nil
	}

	e.Status.SecretName = secret.GetName()
	if e.Status.SecretUID != string(secret.GetUID()) {
		// A new key (first provisioning, or the Secret was deleted by hand): start over as pending.
		lockout.Reset(&e.Status)
		e.Status.SecretUID = string(secret.GetUID())
	}
	if resolved.Mode != v1alpha1.ModeDisabled && !resolved.Allows(method) {
		return notReady(v1alpha1.ReasonMethodNotAllowed, "TwoFactorPolicy %q no longer allows method %q", policy.Name, method), nil
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		ObservedGeneration: e.Generation, Reason: v1alpha1.ReasonKeyProvisioned, Message: "Key provisioned in Secret " + secret.GetName()}, nil
}

// createSecret generates a key and creates the enrollment's Secret. When a Secret of that name exists
// already (our cache was behind, or the Secret is not ours and so not cached), it returns that one: an
// existing key is never replaced.
func (r *EnrollmentReconciler) createSecret(ctx context.Context, e *v1alpha1.UserEnrollment,
	p v1alpha1.ResolvedPolicy, method v1alpha1.Method) (metav1.Object, error) {
	rnd := r.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	key, err := otp.GenerateSecret(int(p.SecretBytes), rnd)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	secret, err := render.OTPSecret(e, render.ParamsFor(p, method), p.Issuer, key)
	if err != nil {
		return nil, err
	}
	if err := r.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			existing := secretMeta()
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(secret), existing); err != nil {
				return nil, fmt.Errorf("getting existing secret: %w", err)
			}
			return existing, nil
		}
		return nil, fmt.Errorf("creating secret: %w", err)
	}
	logf.FromContext(ctx).Info("Created Secret", "secret", klog.KObj(secret), "method", method)
	return secret, nil
}

// secretMeta is an empty Secret of which only metadata is read.
func secretMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// olderDuplicate returns the name of an older enrollment of the same user under the same policy, if any.
func (r *EnrollmentReconciler) olderDuplicate(ctx context.Context, e *v1alpha1.UserEnrollment) (string, error) {
	items, err := indexedEnrollments(ctx, r, e.Namespace, IndexPolicyUser, policyUserKey(e))
	if err != nil {
		return "", fmt.Errorf("listing userenrollments: %w", err)
	}
	for i := range items {
		o := &items[i]
		if o.UID != e.UID && o.DeletionTimestamp.IsZero() && olderThan(o, e) {
			return o.Name, nil
		}
	}
	return "", nil
}

func olderThan(a, b *v1alpha1.UserEnrollment) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// handleLock acts on the administrator's unlock annotation and on expired throttles, and schedules the
// next pass for when the current lock ends.
func (r *EnrollmentReconciler) handleLock(e *v1alpha1.UserEnrollment, now time.Time) (ctrl.Result, []note) {
	var notes []note
	if lockout.Unlock(&e.Status, e.Annotations[v1alpha1.AnnotationUnlock]) {
		notes = append(notes, note{corev1.EventTypeNormal, "Unlocked", "Unlock", "Unlocked by annotation " + v1alpha1.AnnotationUnlock + "; failures reset"})
	}
	if lockout.Expire(&e.Status, now) {
		notes = append(notes, note{corev1.EventTypeNormal, "LockExpired", "Unlock", "Lock ended after its throttle time; failures reset"})
	}
	if wait := lockout.RetryAfter(&e.Status, now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, notes
	}
	return ctrl.Result{}, notes
}

// SetupWithManager registers the reconciler and its watches.
func (r *EnrollmentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("userenrollment").
		// Verification facts the verifier records (steps, counters, successes, failures) need nothing from
		// the manager: during a login storm it would otherwise run a pass per decision.
		For(&v1alpha1.UserEnrollment{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(ev event.UpdateEvent) bool {
			return needsManager(ev.ObjectOld.(*v1alpha1.UserEnrollment), ev.ObjectNew.(*v1alpha1.UserEnrollment))
		}})).
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		// A policy change can make enrollments ready, or not.
		Watches(&v1alpha1.TwoFactorPolicy{}, handler.EnqueueRequestsFromMapFunc(r.enrollmentsOfPolicy),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// When an enrollment goes, a newer duplicate of the same user may take its place.
		Watches(&v1alpha1.UserEnrollment{}, handler.EnqueueRequestsFromMapFunc(r.sameUser),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc: func(event.CreateEvent) bool { return false },
				UpdateFunc: func(event.UpdateEvent) bool { return false },
			})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// needsManager reports whether a change of an enrollment is one the manager acts on: its spec, the unlock
// annotation, deletion, a lock (to clear it when its throttle ends) or a status it did not expect.
func needsManager(old, cur *v1alpha1.UserEnrollment) bool {
	return old.Generation != cur.Generation ||
		old.Annotations[v1alpha1.AnnotationUnlock] != cur.Annotations[v1alpha1.AnnotationUnlock] ||
		!cur.DeletionTimestamp.IsZero() ||
		!old.Status.LockedAt.Equal(cur.Status.LockedAt) || !old.Status.LockedUntil.Equal(cur.Status.LockedUntil) ||
		old.Status.SecretUID != cur.Status.SecretUID || old.Status.ObservedGeneration != cur.Status.ObservedGeneration
}

func (r *EnrollmentReconciler) enrollmentsOfPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	items, err := indexedEnrollments(ctx, r, o.GetNamespace(), IndexPolicy, o.GetName())
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list userenrollments of policy", "policy", klog.KObj(o))
		return nil
	}
	return requestsFor(items)
}

func (r *EnrollmentReconciler) sameUser(ctx context.Context, o client.Object) []reconcile.Request {
	e := o.(*v1alpha1.UserEnrollment)
	items, err := indexedEnrollments(ctx, r, e.Namespace, IndexPolicyUser, policyUserKey(e))
	if err != nil {
		logf.FromContext(ctx).Error(err, "Failed to list userenrollments of user", "userenrollment", klog.KObj(o))
		return nil
	}
	return requestsFor(items)
}
