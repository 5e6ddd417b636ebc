package verifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	eventsv1 "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
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

// Start starts the watch caches of the policy and its ConfigMap (nothing else in the namespace) and the
// watches of changes of its enrollments and Secrets (which read none of them: see directory), and waits
// until both are running. Everything stops when ctx ends.
func Start(ctx context.Context, cfg Config) (*Running, error) {
	clk := cmp.Or[clock.PassiveClock](cfg.Clock, clock.RealClock{})
	serverClock := NewServerClock(clk)
	rc := rest.CopyConfig(cfg.Rest)
	rc.Wrap(serverClock.Wrap)
	rc.DisableCompression = true // every response it reads is small: gzip would cost a decoder's window each
	// One HTTP client (one connection, its requests and watches multiplexed) and one REST mapper serve every
	// client of the replica: each more would cost its own connection buffers and discovery.
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("creating HTTP client: %w", err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("creating REST mapper: %w", err)
	}
	policyEvents := &atomic.Uint64{}
	c, err := newCache(ctx, cfg, rc, hc, mapper, policyEvents)
	if err != nil {
		return nil, err
	}
	cl, err := client.NewWithWatch(rc, client.Options{Scheme: cfg.Scheme, HTTPClient: hc, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	// State Leases are built-in objects: protobuf costs the API server less than JSON on every decision.
	pc := rest.CopyConfig(rc)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	leases, err := coordinationv1.NewForConfigAndClient(pc, hc)
	if err != nil {
		return nil, fmt.Errorf("creating lease client: %w", err)
	}
	events, err := eventRecorder(ctx, cfg, rc, hc)
	if err != nil {
		return nil, err
	}
	r := &Running{cache: c, Verifier: &Verifier{
		Namespace: cfg.Namespace,
		Policy:    cfg.Policy,
		Cache:     c,
		Client:    cl,
		Leases:    leases.Leases(cfg.Namespace),
		Clock:     clk,
		Events:    events,

		ServerClock: serverClock,
		Replica:     cfg.Replica,

		MaxStaleness: cmp.Or(cfg.MaxStaleness, DefaultMaxStaleness),
		MaxPending:   cfg.MaxPending,

		policyEvents: policyEvents,
	}}
	if cfg.SelfEnrollmentRate > 0 {
		r.SelfEnrollments = rate.NewLimiter(rate.Limit(cfg.SelfEnrollmentRate), max(cfg.SelfEnrollmentBurst, 1))
	}
	if err := r.follow(ctx, cfg, cl, rc, hc); err != nil {
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

// newCache creates the watch caches of one policy and its ConfigMap, each selected by name; every event of
// either counts in events.
func newCache(ctx context.Context, cfg Config, rc *rest.Config, hc *http.Client, mapper meta.RESTMapper, events *atomic.Uint64) (cache.Cache, error) {
	c, err := cache.New(rc, cache.Options{
		HTTPClient:                  hc,
		Mapper:                      mapper,
		Scheme:                      cfg.Scheme,
		DefaultNamespaces:           map[string]cache.Config{cfg.Namespace: {}},
		ReaderFailOnMissingInformer: true,
		DefaultTransform:            cache.TransformStripManagedFields(), // not needed, and resent on every update
		ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Field: fields.OneTermEqualSelector("metadata.name", render.ConfigMapName(cfg.Policy)),
				Label: render.Selector(cfg.Policy)},
			&v1alpha1.TwoFactorPolicy{}: {Field: fields.OneTermEqualSelector("metadata.name", cfg.Policy)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating cache: %w", err)
	}
	count := func(any) { events.Add(1) }
	for _, o := range []client.Object{&corev1.ConfigMap{}, &v1alpha1.TwoFactorPolicy{}} {
		inf, err := c.GetInformer(ctx, o)
		if err == nil {
			_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: count, DeleteFunc: count,
				UpdateFunc: func(_, o any) { count(o) }})
		}
		if err != nil {
			return nil, fmt.Errorf("watching %T: %w", o, err)
		}
	}
	return c, nil
}

// follow starts the watches of changes of the policy's enrollments and Secrets, which keep the replica's
// directory current, and waits until each has read its first resourceVersion.
func (r *Running) follow(ctx context.Context, cfg Config, cl client.WithWatch, rc *rest.Config, hc *http.Client) error {
	md, err := metadata.NewForConfigAndClient(rc, hc)
	if err != nil {
		return fmt.Errorf("creating metadata client: %w", err)
	}
	d := newDirectory(0)
	fs := feeds(cfg, cl, md, d)
	d.watches = len(fs)
	r.dir = d
	first := make(chan struct{}, len(fs))
	for _, f := range fs {
		go r.dir.follow(ctx, f, first)
	}
	for range fs {
		select {
		case <-first:
		case <-ctx.Done():
			return fmt.Errorf("watching enrollments and secrets: %w", ctx.Err())
		}
	}
	return nil
}

// eventRecorder returns what Verifier.Events calls: Events recorded as the kube2fa-verifier component.
func eventRecorder(ctx context.Context, cfg Config, rc *rest.Config, hc *http.Client) (func(client.Object, string, string, string), error) {
	cs, err := eventsv1.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("creating events client: %w", err)
	}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs})
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return nil, fmt.Errorf("starting events: %w", err)
	}
	recorder := broadcaster.NewRecorder(cfg.Scheme, "kube2fa-verifier")
	return func(regarding client.Object, eventType, reason, msg string) {
		recorder.Eventf(regarding, nil, eventType, reason, "Verify", "%s", msg)
	}, nil
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
