package alerts

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kube2fa/kube2fa/internal/controlplane"
)

var dir = filepath.Join(controlplane.RepoRoot(), "config", "prometheus")

// promtool checks the rule file and runs its unit tests: each alert fires on what it is for, with the
// labels and text an operator reads, and not on ordinary traffic.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not on $PATH: install Debian's prometheus package (.ci/run does)")
	}
	for _, args := range [][]string{{"check", "rules", "kube2fa.rules.yaml"}, {"test", "rules", "kube2fa.rules.test.yaml"}} {
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// The PrometheusRule for the Prometheus Operator ships exactly the groups promtool tested.
func TestThePrometheusRuleShipsTheTestedRules(t *testing.T) {
	var file struct {
		Groups []any `json:"groups"`
	}
	var rule struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	for name, into := range map[string]any{"kube2fa.rules.yaml": &file, "prometheusrule.yaml": &rule} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(raw, into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if rule.APIVersion != "monitoring.coreos.com/v1" || rule.Kind != "PrometheusRule" || len(file.Groups) == 0 || !reflect.DeepEqual(rule.Spec.Groups, file.Groups) {
		t.Fatal("prometheusrule.yaml's groups differ from kube2fa.rules.yaml's: copy them over")
	}
}
