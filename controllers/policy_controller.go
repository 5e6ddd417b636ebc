package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
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
	"github.com/kube2fa/kube2fa/internal/render"
)

// DefaultCountsDelay is how long enrollment changes are gathered before a policy's counts are rewritten.
const DefaultCountsDelay = time.Second

// PolicyReconciler renders each TwoFactorPolicy into its verifier ConfigMap and keeps its status counts.
type PolicyReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	// CountsDelay coalesces enrollment changes: a burst of them rewrites the policy status once.
	CountsDelay time.Duration
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int

	// counts is kept by the enrollment watch SetupWithManager starts.
	counts *tally
}

// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=twofactorpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=twofactorpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=twofactor.kube2fa.io,resources=twofactorpolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch

// Reconcile renders one policy's ConfigMap and status.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	p := &v1alpha1.TwoFactorPolicy{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			forgetCounts(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !p.DeletionTimestamp.IsZero() {
		forgetCounts(p.Namespace, p.Name)
		return ctrl.Result{}, nil
	}
	before := p.Status.DeepCopy()
	defer func() {
		var recorded bool
		recorded, res, err = recordStatus(ctx, r.Client, p, !equality.Semantic.DeepEqual(before, &p.Status), res, err)
		// A conflict is announced once, when it begins: the verifier refuses to work until it is resolved.
		if recorded && readyReasonIs(p.Status.Conditions, v1alpha1.ReasonConfigMapConflict) &&
			!readyReasonIs(before.Conditions, v1alpha1.ReasonConfigMapConflict) {
			ready := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
			r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, v1alpha1.ReasonConfigMapConflict, "Render", "%s", ready.Message)
		}
	}()

	name := render.ConfigMapName(p.Name)
	state, err := r.applyConfigMap(ctx, p)
	meta.SetStatusCondition(&p.Status.Conditions, policyReady(p.Generation, name, state))
	if err != nil {
		return ctrl.Result{}, err
	}
	p.Status.VerifierConfigMap = name
	p.Status.ObservedGeneration = p.Generation

	if r.counts != nil { // kept by the enrollment watch: a reconciler without it leaves the counts as they are
		counts := r.counts.of(client.ObjectKeyFromObject(p))
		p.Status.Enrollments = &counts
		recordCounts(p, counts)
	}
	return ctrl.Result{}, nil
}

// applyConfigMap creates or updates the verifier ConfigMap when its content hash differs, and reports what
// became of it.
func (r *PolicyReconciler) applyConfigMap(ctx context.Context, p *v1alpha1.TwoFactorPolicy) (configMapState, error) {
	want, err := render.VerifierConfigMap(p)
	if err != nil {
		return configMapFailed, err
	}
	have := &corev1.ConfigMap{}
	switch err := r.Get(ctx, client.ObjectKeyFromObject(want), have); {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, want); err != nil {
			return configMapFailed, fmt.Errorf("creating configmap: %w", err)
		}
		logf.FromContext(ctx).Info("Created ConfigMap", "configmap", klog.KObj(want))
		return configMapCurrent, nil
	case err != nil:
		return configMapFailed, fmt.Errorf("getting configmap: %w", err)
	case !metav1.IsControlledBy(have, p):
		// Not terminal: the verifier refuses to obey a ConfigMap its policy does not control, so the manager
		// keeps trying (with backoff) until an administrator removes it.
		return configMapConflict, fmt.Errorf("configmap %s exists and is not owned by this policy", want.Name)
	}
	if have.Annotations[v1alpha1.AnnotationConfigHash] == want.Annotations[v1alpha1.AnnotationConfigHash] &&
		equality.Semantic.DeepEqual(have.Data, want.Data) && equality.Semantic.DeepEqual(have.Labels, want.Labels) {
		return configMapCurrent, nil
	}
	have.Labels, have.Annotations, have.Data = want.Labels, want.Annotations, want.Data
	if err := r.Update(ctx, have); err != nil {
		return configMapFailed, fmt.Errorf("updating configmap: %w", err)
	}
	logf.FromContext(ctx).Info("Updated ConfigMap", "configmap", klog.KObj(have))
	return configMapCurrent, nil
}

// SetupWithManager registers the reconciler and its watches.
func (r *PolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.counts = newTally()
	return ctrl.NewControllerManagedBy(mgr).
		Named("twofactorpolicy").
		// Not on status updates: the reconciler writes the status itself, and at each write a burst of
		// enrollments would otherwise recount them all again at once, not once per CountsDelay.
		For(&v1alpha1.TwoFactorPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}).
		Watches(&v1alpha1.UserEnrollment{}, r.countsHandler()).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// countsHandler keeps the policies' counts (see tally) and enqueues an enrollment's policy after CountsDelay
// when its counts changed. The work queue keeps one entry per policy, so every change within the delay is
// folded into a single status write.
func (r *PolicyReconciler) countsHandler() handler.EventHandler {
	delay := r.CountsDelay
	if delay == 0 {
		delay = DefaultCountsDelay
	}
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	enqueue := func(e *v1alpha1.UserEnrollment, q queue) {
		q.AddAfter(reconcile.Request{NamespacedName: policyOf(e)}, delay)
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, ev event.CreateEvent, q queue) {
			e := ev.Object.(*v1alpha1.UserEnrollment)
			r.counts.change(nil, e)
			enqueue(e, q)
		},
		UpdateFunc: func(_ context.Context, ev event.UpdateEvent, q queue) {
			old, e := ev.ObjectOld.(*v1alpha1.UserEnrollment), ev.ObjectNew.(*v1alpha1.UserEnrollment)
			if r.counts.change(old, e) {
				enqueue(old, q)
				enqueue(e, q)
			}
		},
		DeleteFunc: func(_ context.Context, ev event.DeleteEvent, q queue) {
			e := ev.Object.(*v1alpha1.UserEnrollment) // its last known state, when the watch missed the deletion
			r.counts.change(e, nil)
			enqueue(e, q)
		},
	}
}
