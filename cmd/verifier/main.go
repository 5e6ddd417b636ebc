// Command verifier runs beside an application (as a sidecar) and answers, for one TwoFactorPolicy, whether a
// user's one-time code is right, enforcing lockout and replay protection across any number of replicas.
// See the README for its HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof-listen
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kube2fa/kube2fa/internal/scheme"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// options are the verifier's flags.
type options struct {
	policy, namespace, listen, metricsListen, pprofListen, kubeconfig string
	qps, selfEnrollRate                                               float64
	burst, selfEnrollBurst, maxPending                                int
	maxStaleness                                                      time.Duration
	authenticateCallers                                               bool
	zap                                                               zap.Options
}

// bind registers the flags on fs.
func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.policy, "policy", "", "Name of the TwoFactorPolicy to verify codes for (required).")
	fs.StringVar(&o.namespace, "namespace", "", "Namespace of the policy (default: the pod's namespace, else the kubeconfig context's).")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8089", "Address of the HTTP API: loopback by default, for the application beside it.")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "Extra address serving only /healthz, /readyz and /metrics (e.g. :9090 for kubelet probes); empty: none.")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "Address serving /debug/pprof for profiling; empty disables it.")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path of a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
	fs.Float64Var(&o.qps, "kube-api-qps", 100, "Client-side limit of API requests per second (each state-changing decision is one); negative: none, API Priority and Fairness alone bounds the verifier.")
	fs.IntVar(&o.burst, "kube-api-burst", 200, "Client-side burst above --kube-api-qps.")
	fs.BoolVar(&o.authenticateCallers, "authenticate-callers", false, "Serve only callers with a ServiceAccount token for audience kube2fa whom RBAC allows to create twofactorpolicies/verify of the policy (for a verifier reached over the network; off for a sidecar on loopback).")
	fs.Float64Var(&o.selfEnrollRate, "self-enrollment-rate", verifier.DefaultSelfEnrollmentRate, "New self-enrollments per second this replica creates at most (429 beyond); 0 for no bound.")
	fs.IntVar(&o.selfEnrollBurst, "self-enrollment-burst", verifier.DefaultSelfEnrollmentBurst, "New self-enrollments this replica creates at once above --self-enrollment-rate.")
	fs.IntVar(&o.maxPending, "max-pending-self-enrollments", verifier.DefaultMaxPending, "Unconfirmed self-enrollments the policy may have at most (503 beyond); 0 for no bound.")
	fs.DurationVar(&o.maxStaleness, "max-staleness", verifier.DefaultMaxStaleness, "Answer 503 and fail readiness when the policy could not be confirmed current (a quorum read of its ConfigMap matching the watch cache) for longer than this.")
	o.zap.BindFlags(fs)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "Usage: verifier --policy NAME [flags]\n\n"+
			"Checks one-time codes for the users of one TwoFactorPolicy; see the README for the HTTP API.\n\n")
		fs.PrintDefaults()
	}
}

func main() {
	var o options
	o.bind(flag.CommandLine)
	flag.Parse()
	log := setupLogging(zap.New(zap.UseFlagOptions(&o.zap)))
	if o.policy == "" {
		fmt.Fprintln(os.Stderr, "verifier: --policy is required")
		flag.Usage()
		os.Exit(2)
	}
	if o.pprofListen != "" {
		go func() {
			srv := newServer(http.DefaultServeMux) // net/http/pprof registers there
			srv.Addr, srv.WriteTimeout = o.pprofListen, 0
			log.Error(srv.ListenAndServe(), "pprof server stopped")
		}()
	}
	if err := run(log, o); err != nil {
		log.Error(err, "Verifier stopped")
		os.Exit(1)
	}
}

// setupLogging makes logger the one logger of every library the verifier uses: client-go's (klog) and
// controller-runtime's, whose caches the verifier runs. It returns the verifier's own named logger.
func setupLogging(logger logr.Logger) logr.Logger {
	klog.SetLogger(logger)
	ctrllog.SetLogger(logger)
	return logger.WithName("verifier")
}

func run(log logr.Logger, o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	namespace := o.namespace
	if namespace == "" {
		if namespace, err = defaultNamespace(loader); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Bind first: a taken port is a clear error before anything else starts.
	apiLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on --listen %s: %w", o.listen, err)
	}
	var metricsLn net.Listener
	if o.metricsListen != "" {
		if metricsLn, err = net.Listen("tcp", o.metricsListen); err != nil {
			return fmt.Errorf("listening on --metrics-listen %s: %w", o.metricsListen, err)
		}
	}

	log.Info("Starting watch caches", "policy", o.policy, "namespace", namespace)
	running, err := verifier.Start(ctx, verifier.Config{Rest: cfg, Scheme: scheme.Scheme, Namespace: namespace, Policy: o.policy,
		MaxStaleness: o.maxStaleness, SelfEnrollmentRate: o.selfEnrollRate, SelfEnrollmentBurst: o.selfEnrollBurst,
		MaxPending: o.maxPending, Replica: replicaName()})
	if err != nil {
		return err
	}
	reg.MustRegister(running.ServerClock.Collector())
	h := &verifier.Handler{V: running.Verifier, Metrics: verifier.NewMetrics(reg), Log: log, Ready: running.Ready, Gatherer: reg}
	if o.authenticateCallers {
		if h.Callers, err = verifier.NewCallers(cfg, namespace, o.policy); err != nil {
			return err
		}
	} else if !isLoopback(o.listen) {
		log.Info("Serving the API beyond loopback to any caller: set --authenticate-callers", "listen", o.listen)
	}

	servers := []*http.Server{newServer(h.Routes())}
	lns := []net.Listener{apiLn}
	if metricsLn != nil {
		mux := http.NewServeMux()
		h.Probes(mux)
		servers, lns = append(servers, newServer(mux)), append(lns, metricsLn)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(lns[i]) }()
	}
	log.Info("Serving", "listen", apiLn.Addr().String(), "metricsListen", o.metricsListen)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	log.Info("Stopped")
	return nil
}

// newServer hardens an HTTP server: every phase of a request is bounded.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second, // self-enrollment waits for the manager's Secret
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

func defaultNamespace(loader clientcmd.ClientConfig) (string, error) {
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return "", fmt.Errorf("finding the namespace (set --namespace): %w", err)
	}
	return ns, nil
}

// isLoopback reports whether addr listens on a loopback address only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// replicaName names this replica in Events: the pod's name ($POD_NAME, from the downward API), else the
// host name, which is the pod's name in Kubernetes too.
func replicaName() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	name, _ := os.Hostname()
	return name
}
