package verifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
)

// Config is what a verifier needs to run.
type Config struct {
	Rest      *rest.Config
	Scheme    *runtime.Scheme
	Namespace string
	Policy    string
	// Clock tells the time of decisions; the real clock when nil (a test's fake clock otherwise).
	Clock clock.PassiveClock
	// MaxStaleness bounds how long the replica answers without confirming that its policy is current
	// (default DefaultMaxStaleness).
	MaxStaleness time.Duration
	// Replica names this replica in Events (cmd/verifier: $POD_NAME, else the host name).
	Replica string
	// SelfEnrollmentRate (per second) and SelfEnrollmentBurst bound how fast this replica creates
	// enrollments; a rate of 0 bounds nothing. MaxPending bounds the policy's unconfirmed
	// self-enrollments; 0 bounds nothing. cmd/verifier's flags default to the Default values below.
	SelfEnrollmentRate  float64
	SelfEnrollmentBurst int
	MaxPending          int
}

// Defaults of the verifier's bounds.
const (
	// DefaultMaxStaleness is how long a replica answers without confirming its policy is current.
	DefaultMaxStaleness = 10 * time.Second
	// DefaultSelfEnrollmentRate and DefaultSelfEnrollmentBurst: ten new enrollments a second, twenty at
	// once, per replica: far above honest sign-ups, far below what fills etcd.
	DefaultSelfEnrollmentRate  = 10
	DefaultSelfEnrollmentBurst = 20
	// DefaultMaxPending unconfirmed self-enrollments per policy: about 3 MB of etcd (a Secret and an
	// object each), and they expire (selfEnrollment.pendingExpirySeconds).
	DefaultMaxPending = 1000
)

// Running is a started verifier: its decision engine over synced watch caches.
type Running struct {
	*Verifier
	cache  cache.Cache
	synced bool
}

// Start starts the watch caches of one policy's objects (the policy, its ConfigMap, its enrollments by field
// selector, their Secrets by label: nothing else in the namespace) and waits until they are synced.
// Everything stops when ctx ends.
func Start(ctx context.Context, cfg Config) (*Running, error) {
	c, err := newCache(ctx, cfg)
	if err != nil {
		return nil, err
	}
	clk := cmp.Or[clock.PassiveClock](cfg.Clock, clock.RealClock{})
	serverClock := NewServerClock(clk)
	rc := rest.CopyConfig(cfg.Rest)
	rc.Wrap(serverClock.Wrap)
	cl, err := client.New(rc, client.Options{Scheme: cfg.Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	// State Leases are built-in objects: protobuf costs the API server less than JSON on every decision.
	pc := rest.CopyConfig(rc)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(pc)
	if err != nil {
		return nil, fmt.Errorf("creating clientset: %w", err)
	}
	events, err := eventRecorder(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := &Running{cache: c, Verifier: &Verifier{
		Namespace: cfg.Namespace,
		Policy:    cfg.Policy,
		Cache:     c,
		Client:    cl,
		Leases:    cs.CoordinationV1().Leases(cfg.Namespace),
		Clock:     clk,
		Events:    events,

		ServerClock: serverClock,
		Replica:     cfg.Replica,

		MaxStaleness: cmp.Or(cfg.MaxStaleness, DefaultMaxStaleness),
		MaxPending:   cfg.MaxPending,
	}}
	if cfg.SelfEnrollmentRate > 0 {
		r.SelfEnrollments = rate.NewLimiter(rate.Limit(cfg.SelfEnrollmentRate), max(cfg.SelfEnrollmentBurst, 1))
	}
	if err := r.forgetOnChange(ctx); err != nil {
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("watch caches did not sync")
	}
	r.synced = true
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, r.MaxStaleness/2) // a hung read must not hold up the next
		defer cancel()
		_ = r.CheckFreshness(ctx)
	}, r.MaxStaleness/4)
	return r, nil
}

// newCache creates the watch caches of one policy's objects, with enrollments indexed by IndexKey.
func newCache(ctx context.Context, cfg Config) (cache.Cache, error) {
	ours := render.Selector(cfg.Policy)
	c, err := cache.New(cfg.Rest, cache.Options{
		Scheme:                      cfg.Scheme,
		DefaultNamespaces:           map[string]cache.Config{cfg.Namespace: {}},
		ReaderFailOnMissingInformer: true,
		DefaultTransform:            cache.TransformStripManagedFields(), // not needed, and resent on every update
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}:         {Field: fields.OneTermEqualSelector("metadata.name", render.ConfigMapName(cfg.Policy)), Label: ours},
			&v1alpha1.TwoFactorPolicy{}: {Field: fields.OneTermEqualSelector("metadata.name", cfg.Policy)},
			&v1alpha1.UserEnrollment{}:  {Field: fields.OneTermEqualSelector("spec.policyRef.name", cfg.Policy)},
			&corev1.Secret{}:            {Label: ours, Transform: keyOnly},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating cache: %w", err)
	}
	// IndexField also creates the enrollments' informer; the ConfigMap's is created here.
	if err := c.IndexField(ctx, &v1alpha1.UserEnrollment{}, IndexKey, func(o client.Object) []string {
		return []string{enrollment.KeyOf(o.(*v1alpha1.UserEnrollment))}
	}); err != nil {
		return nil, fmt.Errorf("indexing enrollments: %w", err)
	}
	return c, nil
}

// forgetOnChange creates the informers and drops what this replica remembered of an object once the cache
// shows a change of it: every change of an enrollment supersedes what this replica wrote, and a deleted
// Secret's key is never used again.
func (r *Running) forgetOnChange(ctx context.Context) error {
	enrollments, err := r.cache.GetInformer(ctx, &v1alpha1.UserEnrollment{})
	if err != nil {
		return fmt.Errorf("watching userenrollments: %w", err)
	}
	forget := func(o any) {
		if e, ok := finalState(o).(*v1alpha1.UserEnrollment); ok {
			r.Forget(client.ObjectKeyFromObject(e))
		}
	}
	if _, err := enrollments.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, o any) { forget(o) },
		DeleteFunc: forget,
	}); err != nil {
		return fmt.Errorf("handling userenrollment events: %w", err)
	}
	secrets, err := r.cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("watching secrets: %w", err)
	}
	if _, err := secrets.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(o any) {
		if s, ok := finalState(o).(*corev1.Secret); ok {
			r.ForgetKey(s.UID)
		}
	}}); err != nil {
		return fmt.Errorf("handling secret events: %w", err)
	}
	if _, err := r.cache.GetInformer(ctx, &corev1.ConfigMap{}); err != nil {
		return fmt.Errorf("watching configmaps: %w", err)
	}
	if _, err := r.cache.GetInformer(ctx, &v1alpha1.TwoFactorPolicy{}); err != nil {
		return fmt.Errorf("watching twofactorpolicies: %w", err)
	}
	return nil
}

// finalState unwraps the last known state of an object whose deletion the watch missed.
func finalState(o any) any {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

// eventRecorder returns what Verifier.Events calls: Events recorded as the kube2fa-verifier component.
func eventRecorder(ctx context.Context, cfg Config) (func(client.Object, string, string, string), error) {
	cs, err := kubernetes.NewForConfig(cfg.Rest)
	if err != nil {
		return nil, fmt.Errorf("creating clientset: %w", err)
	}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return nil, fmt.Errorf("starting events: %w", err)
	}
	recorder := broadcaster.NewRecorder(cfg.Scheme, "kube2fa-verifier")
	return func(regarding client.Object, eventType, reason, msg string) {
		recorder.Eventf(regarding, nil, eventType, reason, "Verify", "%s", msg)
	}, nil
}

// keyOnly keeps of a cached Secret what verification reads. Enrollment reads the rest from the API server.
func keyOnly(o any) (any, error) {
	o, err := cache.TransformStripManagedFields()(o)
	if s, ok := o.(*corev1.Secret); ok {
		render.DropEnrollmentMaterial(s)
	}
	return o, err
}

// Ready reports whether the caches are synced, the policy's ConfigMap is loaded, and, when the policy allows
// TOTP, the replica's clock can judge TOTP codes.
func (r *Running) Ready() error {
	if !r.synced {
		return errors.New("watch caches are not synced")
	}
	p, err := r.resolvedPolicy(context.Background())
	if err == nil && p.Allows(v1alpha1.MethodTOTP) {
		err = r.ServerClock.fault(p)
	}
	return err
}
