package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"

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
	// Injection, when set, serves the sidecar-injection webhook and keeps the injected verifiers' RBAC.
	Injection *InjectionOptions
}

// CacheOptions returns the manager's cache configuration: only the Secrets and ConfigMaps kube2fa manages
// are cached (a cluster's Secrets can be many and large; of Secrets the reconciler caches only who owns
// them), with managed fields stripped, and only namespace when it is not empty.
func CacheOptions(namespace string) cache.Options {
	ours := render.Selector("")
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Label: ours, Transform: ownershipOnly},
			&corev1.ConfigMap{}: {Label: ours},
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

// injectedPods selects the pods labelled for injection.
func injectedPods() k8slabels.Selector {
	req, err := k8slabels.NewRequirement(inject.LabelPolicy, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant key
	}
	return k8slabels.NewSelector().Add(*req)
}

// ownershipOnly keeps of a Secret's cached metadata what the enrollment reconciler reads: which Secret it
// is and which enrollment controls it. Labels, annotations and timestamps would be a tenth of the manager's
// live heap at 10,000 enrollments.
func ownershipOnly(o any) (any, error) {
	m, ok := o.(*metav1.PartialObjectMetadata)
	if !ok {
		return cache.TransformStripManagedFields()(o)
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp, OwnerReferences: m.OwnerReferences,
	}}, nil
}

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
