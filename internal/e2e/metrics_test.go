package e2e_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

// The manager's metrics are served as the kubebuilder scaffold serves them: over HTTPS, to callers whose
// token the API server authenticates and authorizes for GET /metrics, through the ClusterRole that
// config/rbac renders for scrapers. Nobody else reads them.
func TestManagerMetricsAreServedOnlyToCallersAllowedToReadThem(t *testing.T) {
	ns := namespace(t)
	addr, probe := devcluster.FreeAddr(), devcluster.FreeAddr()
	// Its own namespace only: it must not reconcile alongside the shared manager.
	p, err := cluster.Start("manager-metrics", managerBin, "--metrics-bind-address="+addr,
		"--health-probe-bind-address="+probe, "--watch-namespace="+ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.WaitHTTP(ctx, "http://"+probe+"/readyz", time.Minute); err != nil {
		t.Fatal(err)
	}

	reader := serviceAccountToken(t, ns, "prometheus")
	stranger := serviceAccountToken(t, ns, "stranger")
	role := &rbacv1.ClusterRole{}
	raw, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "config", "rbac", "metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, role); err != nil {
		t.Fatal(err)
	}
	role.Name = ns + "-metrics-reader"
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: ns}}}
	for _, o := range []client.Object{role, binding} {
		if err := cluster.Env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Env.Client.Delete(ctx, o) })
	}

	scrape := func(scheme, token string) (int, string) {
		req, _ := http.NewRequest("GET", scheme+"://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// The manager serves a self-signed certificate unless given one: the test checks who may read, not
		// the certificate.
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		res, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = res.Body.Close() }()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	testenv.Eventually(t, "the metrics endpoint to answer", func() bool { code, _ := scrape("https", ""); return code != 0 })
	if code, _ := scrape("https", ""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	// controller-runtime's filter answers 500 "Authentication failed" when the TokenReview of a forged token
	// reports an error, 401 when it only says "not authenticated": refused either way.
	if code, body := scrape("https", "not-a-token"); (code != http.StatusUnauthorized && code != http.StatusInternalServerError) ||
		strings.Contains(body, "controller_runtime") {
		t.Errorf("with a forged token: %d, want 401 or 500 and no metrics", code)
	}
	if code, _ := scrape("https", stranger); code != http.StatusForbidden {
		t.Errorf("a ServiceAccount not allowed to GET /metrics: %d, want 403", code)
	}
	if code, _ := scrape("http", reader); code == http.StatusOK {
		t.Error("metrics are served over plain HTTP")
	}
	// RBAC bindings take effect at once, but the manager's authorizer caches a decision briefly.
	testenv.Eventually(t, "the metrics reader to be allowed", func() bool {
		code, body := scrape("https", reader)
		return code == http.StatusOK && strings.Contains(body, "controller_runtime_reconcile_total")
	})
}

// serviceAccountToken creates ServiceAccount name in ns and returns a token for it, as a pod would get.
func serviceAccountToken(t *testing.T, ns, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := cluster.Env.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
	if err := cluster.Env.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("requesting a token for %s: %v", name, err)
	}
	return tr.Status.Token
}
