// Command manager runs kube2fa's controllers: it renders each TwoFactorPolicy into its verifier ConfigMap
// and provisions each UserEnrollment's key Secret, lock expiry and unlocks.
package main

import (
	"crypto/tls"
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

func main() {
	var (
		metricsAddr, probeAddr, pprofAddr, watchNamespace string
		leaderElect, enableHTTP2                          bool
		concurrency                                       int
		qps                                               float64
		burst                                             int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address serving /debug/pprof for profiling; empty disables it.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so that only one of several manager replicas reconciles.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Serve metrics over HTTP/2 too (off: HTTP/2 rapid-reset and stream-cancellation CVEs).")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 4, "Reconciles each controller runs in parallel.")
	flag.Float64Var(&qps, "kube-api-qps", 50, "Client-side limit of API requests per second; raise it for thousands of enrollments.")
	flag.IntVar(&burst, "kube-api-burst", 100, "Client-side burst of API requests above --kube-api-qps.")
	flag.StringVar(&watchNamespace, "watch-namespace", "", "Only reconcile objects in this namespace (default: all namespaces).")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.Scheme,
		Cache:                         controllers.CacheOptions(watchNamespace),
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr, TLSOpts: tlsOpts},
		WebhookServer:                 webhook.NewServer(webhook.Options{TLSOpts: tlsOpts}),
		HealthProbeBindAddress:        probeAddr,
		PprofBindAddress:              pprofAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "manager.twofactor.kube2fa.io",
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "Failed to create manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.Setup(ctx, mgr, controllers.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		log.Error(err, "Failed to set up controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Failed to add health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Failed to add ready check")
		os.Exit(1)
	}
	log.Info("Starting manager", "watchNamespace", watchNamespace, "maxConcurrentReconciles", concurrency)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}
