package alerts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/verifier"
)

// exported are the names of the metrics kube2fa's binaries export, from their collectors' descriptions.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := verifier.NewMetrics(prometheus.NewRegistry())
	collectors := append([]prometheus.Collector{m.Verifications, m.Lockouts, m.SelfEnrollments, m.APIThrottled, m.Duration,
		verifier.NewServerClock(clock.RealClock{}).Collector()}, controllers.MetricCollectors()...)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for _, c := range collectors {
		descs := make(chan *prometheus.Desc, 8)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			if match := fqName.FindStringSubmatch(d.String()); match != nil {
				names[match[1]] = true
			}
		}
	}
	return names
}

// The alert rules and the Grafana dashboard read only metrics that exist: a renamed metric would leave an
// alert that never fires and a panel that stays empty, silently.
func TestAlertsAndDashboardReadOnlyExportedMetrics(t *testing.T) {
	names := exported(t)
	if !names["kube2fa_verifications_total"] || !names["kube2fa_policy_enrollments"] {
		t.Fatalf("the exported metrics were not found: %v", names)
	}
	rules, err := os.ReadFile(filepath.Join(dir, "kube2fa.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "config", "grafana", "kube2fa.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dashboard); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	exprs := []string{string(rules)}
	for _, p := range dashboard.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	used := regexp.MustCompile(`kube2fa_[a-z_]+`)
	for _, e := range exprs {
		for _, name := range used.FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !names[name] && !names[base] {
				t.Errorf("%s is read but kube2fa exports no such metric", name)
			}
		}
	}
}
