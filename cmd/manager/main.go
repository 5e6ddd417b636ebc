// Command manager runs kube2fa's controllers: it renders each TwoFactorPolicy into its verifier ConfigMap
// and provisions each UserEnrollment's key Secret, lock expiry and unlocks.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/inject"
	"github.com/kube2fa/kube2fa/internal/memory"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// options are the manager's flags.
type options struct {
	metricsAddr, probeAddr, pprofAddr, watchNamespace string
	provenanceSecret                                  string
	secureMetrics, leaderElect, enableHTTP2           bool
	concurrency, burst                                int
	qps                                               float64
	zap                                               zap.Options
	webhook                                           webhookOptions
}

// webhookOptions are the flags of sidecar injection.
type webhookOptions struct {
	port                                              int
	certDir, certSecret, service, configuration, role string
	extraDNSNames                                     []string
	rotate                                            bool
	verifierImage, priorityLevel                      string
}

// version is the manager's release, set at build time (-ldflags "-X main.version=v1.2.3"); the injected
// verifier's image defaults to the same release.
var version = "latest"

// defaultVerifierImage is the image of the injected verifier unless --verifier-image says otherwise.
func defaultVerifierImage() string { return "ghcr.io/kube2fa/kube2fa:" + version }

// bind registers the flags on fs.
func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", "0", "Address of the Prometheus metrics endpoint, e.g. :8443 (HTTPS) or :8080 (with --metrics-secure=false); 0 disables it.")
	fs.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, only to callers whose token the API server authenticates and authorizes for GET /metrics.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address serving /debug/pprof for profiling; empty disables it.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so that only one of several manager replicas reconciles.")
	fs.BoolVar(&o.enableHTTP2, "enable-http2", false, "Serve metrics over HTTP/2 too (off: HTTP/2 rapid-reset and stream-cancellation CVEs).")
	fs.IntVar(&o.concurrency, "max-concurrent-reconciles", 4, "Reconciles each controller runs in parallel.")
	fs.Float64Var(&o.qps, "kube-api-qps", 50, "Client-side limit of API requests per second; raise it for thousands of enrollments; negative: none.")
	fs.IntVar(&o.burst, "kube-api-burst", 100, "Client-side burst of API requests above --kube-api-qps.")
	fs.StringVar(&o.watchNamespace, "watch-namespace", "", "Only reconcile objects in this namespace (default: all namespaces).")
	fs.StringVar(&o.provenanceSecret, "provenance-secret", "", "NAMESPACE/NAME of the Secret holding the key with which the manager signs the OTP Secrets it creates, created when missing (default: kube2fa-provenance in $POD_NAMESPACE, else in default).")
	fs.IntVar(&o.webhook.port, "webhook-port", 0, "Port of the sidecar-injection webhook (HTTPS; 9443 in config/default); 0 disables injection.")
	fs.StringVar(&o.webhook.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook's tls.crt and tls.key (the mounted certificate Secret).")
	fs.BoolVar(&o.webhook.rotate, "webhook-cert-rotation", true, "Provision and rotate the webhook's certificate in --webhook-cert-secret and the caBundle of --webhook-configuration; false when cert-manager does.")
	fs.StringVar(&o.webhook.certSecret, "webhook-cert-secret", "kube2fa-webhook-server-cert", "Secret in the manager's namespace that holds the webhook's CA and certificate.")
	fs.StringVar(&o.webhook.service, "webhook-service", "kube2fa-webhook-service", "Service in the manager's namespace in front of the webhook; its DNS name is in the certificate.")
	fs.Func("webhook-extra-dns-names", "Comma-separated extra DNS names for the webhook's certificate (e.g. localhost, for a manager run outside the cluster).", func(v string) error {
		o.webhook.extraDNSNames = append(o.webhook.extraDNSNames, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&o.webhook.configuration, "webhook-configuration", "kube2fa-injector", "MutatingWebhookConfiguration whose caBundle the manager keeps.")
	fs.StringVar(&o.webhook.role, "verifier-clusterrole", "kube2fa-verifier", "ClusterRole bound, in each namespace with injected pods, to those pods' ServiceAccounts.")
	fs.StringVar(&o.webhook.priorityLevel, "verifier-priority-level", "kube2fa-verifiers", "PriorityLevelConfiguration into which a FlowSchema the manager keeps sends all requests of injected pods' ServiceAccounts; empty: no FlowSchema.")
	fs.StringVar(&o.webhook.verifierImage, "verifier-image", defaultVerifierImage(), "Image of the injected verifier (a pod's annotation "+inject.AnnotationImage+" overrides it).")
	o.zap.BindFlags(fs)
}

// injection is what SetupInjection needs from the flags, in the manager's namespace.
func (w webhookOptions) injection(namespace string) controllers.InjectionOptions {
	return controllers.InjectionOptions{
		Port:                 w.port,
		CertDir:              w.certDir,
		Rotate:               w.rotate,
		CertSecret:           types.NamespacedName{Namespace: namespace, Name: w.certSecret},
		DNSNames:             append([]string{w.service + "." + namespace + ".svc"}, w.extraDNSNames...),
		WebhookConfiguration: w.configuration,
		VerifierClusterRole:  w.role,
		Sidecar:              inject.Options{Image: w.verifierImage},
		PriorityLevel:        w.priorityLevel,
	}
}

// Checking who may read the metrics takes a TokenReview and a SubjectAccessReview per scrape.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// managerOptions are controller-runtime's options for o: the scaffold's secure metrics, no webhook server
// (nothing is served but metrics and probes), leader election with a stable ID.
func (o *options) managerOptions() ctrl.Options {
	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metrics := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics, TLSOpts: tlsOpts}
	if o.secureMetrics {
		// TokenReview and SubjectAccessReview: only a caller allowed to GET /metrics reads them.
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return ctrl.Options{
		Scheme:                        scheme.Scheme,
		Cache:                         controllers.CacheOptions(o.watchNamespace),
		Client:                        controllers.ClientOptions(),
		Metrics:                       metrics,
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "manager.twofactor.kube2fa.io",
		LeaderElectionReleaseOnCancel: true,
	}
}

func main() {
	memory.SetGCPercent()
	var o options
	o.bind(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	if err := run(o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	log := ctrl.Log.WithName("setup")
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	mgr, err := ctrl.NewManager(cfg, o.managerOptions())
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	ref, err := provenanceSecret(o.provenanceSecret)
	if err != nil {
		return err
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	key, err := provenanceKey(ctx, direct, ref)
	if err != nil {
		return err
	}
	copts := controllers.Options{MaxConcurrentReconciles: o.concurrency, ProvenanceKey: key, Namespace: o.watchNamespace}
	if o.webhook.port != 0 {
		inj := o.webhook.injection(ownNamespace())
		copts.Injection = &inj
	}
	if err := controllers.Setup(ctx, mgr, copts); err != nil {
		return fmt.Errorf("setting up controllers: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	log.Info("Starting manager", "watchNamespace", o.watchNamespace, "maxConcurrentReconciles", o.concurrency,
		"metrics", o.metricsAddr, "secureMetrics", o.secureMetrics, "webhookPort", o.webhook.port)
	return mgr.Start(ctx)
}
