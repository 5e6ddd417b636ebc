package manifests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kube2fa/kube2fa/internal/controlplane"
)

// ErrNoKustomize means that neither the pinned kustomize nor kubectl is there to render with.
var ErrNoKustomize = errors.New("neither the pinned kustomize (make installs it for 'make deploy') nor kubectl (for 'kubectl kustomize') is available")

// Build renders dir (relative to the repository) with the kustomize the Makefile pins, else with kubectl's
// built-in kustomize.
func Build(ctx context.Context, dir string) ([]byte, error) {
	pinned, err := PinnedTool("kustomize")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(controlplane.RepoRoot(), dir)
	cmd := exec.CommandContext(ctx, pinned, "build", path)
	if _, err := os.Stat(pinned); err != nil {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			return nil, ErrNoKustomize
		}
		cmd = exec.CommandContext(ctx, kubectl, "kustomize", path)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return out, nil
}

// PinnedTool is where the Makefile installs tool at the version it pins (TOOL_VERSION): bin/tool-version.
func PinnedTool(tool string) (string, error) {
	root := controlplane.RepoRoot()
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		return "", err
	}
	name := strings.ToUpper(tool) + "_VERSION"
	m := regexp.MustCompile(`(?m)^` + name + `\s*\?=\s*(\S+)`).FindSubmatch(makefile)
	if m == nil {
		return "", fmt.Errorf("the Makefile no longer pins %s", name)
	}
	return filepath.Join(root, "bin", tool+"-"+string(m[1])), nil
}

// Parse splits a multi-document YAML stream into objects, each with a name.
func Parse(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("not valid YAML: %w\n%s", err, doc)
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "" {
			continue
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("not a Kubernetes object: %w\n%s", err, doc)
		}
		if o.GetName() == "" {
			return nil, fmt.Errorf("a %s without a name", o.GetKind())
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		return nil, errors.New("no objects")
	}
	return objs, nil
}

// PointWebhooksAt makes every webhook of a rendered webhook configuration call url instead of its Service:
// for a manager run outside the cluster (tests, a developer's machine), which no Service can reach.
func PointWebhooksAt(o *unstructured.Unstructured, url string) {
	hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
	for _, h := range hooks {
		h.(map[string]any)["clientConfig"] = map[string]any{"url": url}
	}
	_ = unstructured.SetNestedSlice(o.Object, hooks, "webhooks")
}
