// Package testenv holds what kube2fa's test packages share: one local control plane per package (see
// internal/controlplane), a fresh namespace per test, the manager run in-process, waiting for a condition
// and editing a policy as a person does.
package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// Env is the control plane of one test package.
type Env struct {
	*controlplane.Env
	// provenance is the provenance key of every manager StartManager runs on this control plane, as a
	// deployed manager keeps one across restarts.
	provenance []byte
}

// Options choose what runs beside etcd and kube-apiserver.
type Options = controlplane.Options

// Timeout bounds every wait of Eventually: generous, so that a slow machine is not a failure.
const Timeout = time.Minute

// Eventually polls cond until it holds, and fails the test when it does not within Timeout, saying what was
// awaited. Assertions read through a direct API client, never through a cache under test.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyErr(t, what, func() (bool, error) { return cond(), nil })
}

// EventuallyErr is Eventually for a condition that can fail to be read; the failure names its last error.
func EventuallyErr(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, Timeout, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok && err == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

// EditPolicy changes a policy's spec the way a person or a GitOps tool does: read, change, write, retried
// when the manager's status write came in between. It returns the policy as written.
func EditPolicy(t testing.TB, c client.Client, key client.ObjectKey, edit func(*v1alpha1.TwoFactorPolicySpec)) *v1alpha1.TwoFactorPolicy {
	t.Helper()
	p := &v1alpha1.TwoFactorPolicy{}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), key, p); err != nil {
			return err
		}
		edit(&p.Spec)
		return c.Update(context.Background(), p)
	})
	if err != nil {
		t.Fatalf("editing policy %s: %v", key, err)
	}
	return p
}

// Start starts a control plane of a test's own (see controlplane.Start).
func Start(opts Options) (*Env, error) {
	cp, err := controlplane.Start(opts)
	if err != nil {
		return nil, err
	}
	e := &Env{Env: cp, provenance: make([]byte, 32)}
	if _, err := rand.Read(e.provenance); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	return e, nil
}

// Main runs a test package's tests against one control plane started for them, stored in *env.
func Main(m *testing.M, opts Options, env **Env) {
	// A fuzzing run (-fuzz, and each of its worker processes) exercises pure code: it needs no control
	// plane, and would otherwise start one per worker.
	flag.Parse()
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			os.Exit(m.Run())
		}
	}
	e, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stopping:", err)
	}
	os.Exit(code)
}

// Namespace creates a fresh namespace for one test.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// StartManager runs kube2fa's controllers in-process, exactly as cmd/manager wires them, until the test
// ends or the returned stop function is called. stop waits until the manager has stopped.
func (e *Env) StartManager(t testing.TB, opts controllers.Options) (stop func()) {
	t.Helper()
	return e.StartManagerAs(t, e.Config, "", opts)
}

// StartManagerAs is StartManager with the manager's API client cfg (an identity with only the permissions
// a test grants) and, when namespace is not empty, watching that namespace alone (--watch-namespace).
func (e *Env) StartManagerAs(t testing.TB, cfg *rest.Config, namespace string, opts controllers.Options) (stop func()) {
	t.Helper()
	if opts.ProvenanceKey == nil {
		opts.ProvenanceKey = e.provenance
	}
	opts.Namespace = namespace
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.Scheme,
		Cache:                  controllers.CacheOptions(namespace),
		Client:                 controllers.ClientOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Several managers may run one after another in one test process, with the same controller names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("creating manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.Setup(ctx, mgr, opts); err != nil {
		cancel()
		t.Fatalf("setting up controllers: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager stopped with an error: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("manager did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}
