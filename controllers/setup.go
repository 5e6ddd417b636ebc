package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/inject"
	"github.com/kube2fa/kube2fa/internal/render"
)

// Options configure the manager's reconcilers.
type Options struct {
	// MaxConcurrentReconciles per controller.
	MaxConcurrentReconciles int
	// Clock drives lock expiry: the enrollment controller reads the time from it, and when it is set, its work
	// queue waits on it too, so that a test's fake clock ends a lock when the test steps it. When nil, the
	// real clock and controller-runtime's default (priority) queue.
	Clock clock.WithTicker
	// ProvenanceKey is the manager's own secret with which it signs the Secrets it creates (required; the
	// same across restarts, so that a Secret created just before a crash is recognised after it).
	ProvenanceKey []byte
	// Namespace is the one namespace the manager watches (--watch-namespace); all when empty.
	Namespace string
	// Injection, when set, serves the sidecar-injection webhook and keeps the injected verifiers' RBAC.
	Injection *InjectionOptions
}

// CacheOptions returns the manager's cache configuration: enrollments as leanEnrollment keeps them, only the
// ConfigMaps kube2fa manages, no Secret at all (see ClientOptions), with managed fields stripped, and only
// namespace when it is not empty.
func CacheOptions(namespace string) cache.Options {
	ours := render.Selector("")
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.UserEnrollment{}: {Transform: leanEnrollment},
			&corev1.ConfigMap{}:        {Label: ours},
			// Injection: the pods labelled for it, and the RoleBindings and the FlowSchema the manager keeps for them.
			&corev1.Pod{}:               {Label: injectedPods(), Transform: podForAccess},
			&rbacv1.RoleBinding{}:       {Label: ours},
			&flowcontrolv1.FlowSchema{}: {Label: ours},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	if namespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	return opts
}

// ClientOptions returns the manager's client configuration: Secrets are read from the API server, never
// cached. A cluster's Secrets can be many and large, and an enrollment's is read by name when its reconciler
// needs it; what changes them is followed by a watch without a cache (keyChanges). At 100,000 enrollments,
// caching even their metadata held a fifth of the manager's heap.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

// injectedPods selects the pods labelled for injection.
func injectedPods() k8slabels.Selector {
	req, err := k8slabels.NewRequirement(inject.LabelPolicy, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key
	}
	return k8slabels.NewSelector().Add(*req)
}

// leanEnrollment is how the manager caches an enrollment, which at 100,000 enrollments is most of what it
// holds. A pass reads the whole enrollment from the API server; the cache serves the watches' handlers and
// the lookups of a user's other enrollments, so of the status it keeps only what those read
// (enrollment.CountOf, needsManager, enrollment.Precedes): the key's UID, the observed generation, whether
// it was confirmed, and which conditions are True, without their reasons, messages and times. It keeps no
// managed fields and no annotations other than kube2fa's, and the strings enrollments share (namespace,
// policy, method, condition types) once for all of them. That is about 0.57 KB an enrollment instead of
// 1.25 (README, Performance).
func leanEnrollment(o any) (any, error) {
	e, ok := o.(*v1alpha1.UserEnrollment)
	if !ok {
		return cache.TransformStripManagedFields()(o)
	}
	e.ManagedFields = nil
	for k := range e.Annotations {
		if !strings.HasPrefix(k, v1alpha1.GroupVersion.Group+"/") {
			delete(e.Annotations, k)
		}
	}
	if len(e.Annotations) == 0 {
		e.Annotations = nil
	}
	e.APIVersion, e.Kind, e.Namespace = shared(e.APIVersion), shared(e.Kind), shared(e.Namespace)
	e.Spec.PolicyRef.Name = shared(e.Spec.PolicyRef.Name)
	e.Spec.Method = shared(e.Spec.Method)
	if e.Spec.User == e.Name { // equal strings, decoded apart: the user's name shares the object's
		e.Spec.User = e.Name
	}
	st := e.Status
	e.Status = v1alpha1.UserEnrollmentStatus{SecretUID: st.SecretUID, ObservedGeneration: st.ObservedGeneration, ConfirmedAt: st.ConfirmedAt}
	for _, c := range st.Conditions {
		if c.Status == metav1.ConditionTrue {
			e.Status.Conditions = append(e.Status.Conditions, metav1.Condition{Type: shared(c.Type), Status: metav1.ConditionTrue})
		}
	}
	return e, nil
}

// shared is s held once for every holder of an equal string.
func shared[S ~string](s S) S { return S(unique.Make(string(s)).Value()) }

// Setup registers the field indexes and both reconcilers with mgr, and injection when asked.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if len(opts.ProvenanceKey) < 32 {
		return errors.New("a provenance key of at least 32 bytes is required")
	}
	if err := SetupIndexes(ctx, mgr); err != nil {
		return fmt.Errorf("registering field indexes: %w", err)
	}
	if err := (&PolicyReconciler{
		Client:                  mgr.GetClient(),
		Recorder:                mgr.GetEventRecorder("kube2fa-manager"),
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up twofactorpolicy controller: %w", err)
	}
	if err := (&EnrollmentReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Namespace:               opts.Namespace,
		Recorder:                mgr.GetEventRecorder("kube2fa-manager"),
		Clock:                   cmp.Or[clock.PassiveClock](opts.Clock, clock.RealClock{}),
		QueueClock:              opts.Clock,
		ProvenanceKey:           opts.ProvenanceKey,
		MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up userenrollment controller: %w", err)
	}
	if opts.Injection != nil {
		if err := SetupInjection(mgr, *opts.Injection); err != nil {
			return fmt.Errorf("setting up injection: %w", err)
		}
	}
	return nil
}
