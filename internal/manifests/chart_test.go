package manifests_test

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kube2fa/kube2fa/internal/controlplane"
)

const chart = "charts/kube2fa"

// helm runs the helm the Makefile pins (make test builds it) with args, in the repository, and returns its
// output and error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := pinnedTool(t, "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: make test builds it (or make helm)", bin)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = controlplane.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// template renders the chart as release kube2fa in namespace kube2fa-system, CRDs included, with extra
// flags (--set ...).
func template(t *testing.T, extra ...string) rendering {
	t.Helper()
	out, err := helm(t, append([]string{"template", "kube2fa", chart, "--namespace", "kube2fa-system", "--include-crds"}, extra...)...)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(extra, " "), err, out)
	}
	return rendering{dir: chart, yaml: []byte(out), objs: parse(t, chart, []byte(out))}
}

func TestTheChartLints(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chart); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

// One source of truth: with its default values, the chart renders exactly config/default's objects (but the
// Namespace, which `helm install --create-namespace` makes), field for field, but for the labels each tool
// adds of its own.
func TestTheChartRendersWhatConfigDefaultDoes(t *testing.T) {
	want, got := render(t, "config/default"), template(t)
	key := func(o *unstructured.Unstructured) string { return o.GetKind() + "/" + o.GetName() }
	// The image is the one difference by design: config/default's is what `make deploy IMG=...` sets, the
	// chart's its appVersion (checked below).
	normal := func(o *unstructured.Unstructured) map[string]any {
		c := o.DeepCopy()
		unstructured.RemoveNestedField(c.Object, "metadata", "labels")
		if containers, ok, _ := unstructured.NestedSlice(c.Object, "spec", "template", "spec", "containers"); ok {
			for _, ctr := range containers {
				ctr := ctr.(map[string]any)
				delete(ctr, "image")
				delete(ctr, "imagePullPolicy")
				// The chart names the verifier image it installs; config/default leaves the manager's default
				// (its own release).
				if args, ok := ctr["args"].([]any); ok {
					ctr["args"] = slices.DeleteFunc(slices.Clone(args), func(a any) bool {
						return strings.HasPrefix(a.(string), "--verifier-image=")
					})
				}
			}
			_ = unstructured.SetNestedSlice(c.Object, containers, "spec", "template", "spec", "containers")
		}
		return c.Object
	}
	manager := container(t, got.deployment(t), "manager")
	if manager.Image != "ghcr.io/kube2fa/kube2fa:0.1.0" {
		t.Errorf("the chart's manager image is %s, not the chart's appVersion", manager.Image)
	}
	if v, _ := flagValue(manager.Args, "verifier-image"); v != manager.Image {
		t.Errorf("the chart injects verifier image %q, not the manager's own %q", v, manager.Image)
	}
	charted := map[string]*unstructured.Unstructured{}
	for _, o := range got.objs {
		charted[key(o)] = o
	}
	var missing []string
	for _, w := range want.objs {
		if w.GetKind() == "Namespace" {
			continue
		}
		g, ok := charted[key(w)]
		if !ok {
			missing = append(missing, key(w))
			continue
		}
		delete(charted, key(w))
		if !reflect.DeepEqual(normal(g), normal(w)) {
			t.Errorf("%s differs between the chart and config/default:\nchart:  %v\nconfig: %v", key(w), normal(g), normal(w))
		}
	}
	if len(missing) > 0 || len(charted) > 0 {
		t.Errorf("config/default has %v that the chart lacks; the chart has %v that config/default lacks", missing, slices.Collect(maps.Keys(charted)))
	}
}

// Every flavour of the chart is accepted by a real API server (server-side dry run), the optional objects
// with their CRDs absent excepted: namespaced RBAC, no metrics, no APF.
func TestTheChartIsAcceptedByARealAPIServer(t *testing.T) {
	ns := namedRestrictedNamespace(t, "kube2fa-system")
	serverDryRunApply(t, template(t), ns)
	namespaced := template(t, "--set", "rbac.scope=Namespaced", "--set", "rbac.watchNamespace=shop",
		"--set", "metrics.enabled=false", "--set", "apf.enabled=false", "--set", "injection.enabled=false", "--set", "replicas=2")
	namedRestrictedNamespace(t, "shop")
	serverDryRunApply(t, namespaced, "")
	d := namespaced.deployment(t)
	args := container(t, d, "manager").Args
	if !slices.Contains(args, "--watch-namespace=shop") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--metrics-bind-address") }) {
		t.Fatalf("namespaced manager args: %v", args)
	}
	for _, o := range namespaced.objs {
		if o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "FlowSchema" || o.GetKind() == "MutatingWebhookConfiguration" {
			t.Fatalf("a namespaced install without APF renders %s %s", o.GetKind(), o.GetName())
		}
	}
}

// values.schema.json refuses a bad value, naming it, before anything is rendered.
func TestTheChartRefusesBadValuesWithAClearMessage(t *testing.T) {
	for _, tt := range []struct {
		set  []string
		want string
	}{
		{[]string{"replicas=0"}, "replicas"},
		{[]string{"image.pullPolicy=Sometimes"}, "pullPolicy"},
		{[]string{"rbac.scope=Everywhere"}, "scope"},
		{[]string{"rbac.scope=Namespaced", "injection.enabled=false"}, "watchNamespace"},
		{[]string{"rbac.scope=Namespaced", "rbac.watchNamespace=shop"}, "injection"},
		{[]string{"metrics.enabled=maybe"}, "enabled"},
		{[]string{"replicaCount=2"}, "replicaCount"},
		{[]string{"replicas=2", "leaderElection=false"}, "leaderElection"},
	} {
		var args []string
		for _, s := range tt.set {
			args = append(args, "--set", s)
		}
		out, err := helm(t, append([]string{"template", "kube2fa", chart, "--namespace", "kube2fa-system"}, args...)...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("--set %v: want an error naming %s, got %v:\n%s", tt.set, tt.want, err, out)
		}
	}
}

// The monitoring objects, for clusters with the Prometheus Operator: the alerts are config/prometheus's.
func TestTheChartRendersTheAlertsAndAServiceMonitorWhenAsked(t *testing.T) {
	r := template(t, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=prom",
		"--set", "metrics.serviceMonitor.enabled=true")
	rule := r.only(t, "PrometheusRule")
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	raw, err := os.ReadFile(filepath.Join(controlplane.RepoRoot(), "config", "prometheus", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := unstructured.NestedSlice(parse(t, "config/prometheus", raw)[0].Object, "spec", "groups")
	if len(groups) == 0 || !reflect.DeepEqual(groups, want) || rule.GetLabels()["release"] != "prom" {
		t.Fatalf("the chart's PrometheusRule is not config/prometheus's: %v", rule.Object)
	}
	if sm := r.only(t, "ServiceMonitor"); sm.GetNamespace() != "kube2fa-system" {
		t.Fatalf("ServiceMonitor: %v", sm.Object)
	}
}
