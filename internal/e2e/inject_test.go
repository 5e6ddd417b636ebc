package e2e_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/inject"
)

// A team labels its pod; the manager binary's webhook adds the verifier; the verifier binary, started with
// the mutated pod's own arguments and the pod ServiceAccount's token (which the manager bound to the
// verifier's role when it saw the labelled pod), enrolls a user and checks her code.
func TestAnInjectedVerifierChecksACode(t *testing.T) {
	ns := namespace(t)
	apply(t, ns, policy("Enforced", ""))
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "tfp/webapp")
	token := serviceAccountToken(t, ns, "webapp")

	listen := strings.TrimPrefix(devcluster.FreeAddr(), "127.0.0.1:")
	metrics := strings.TrimPrefix(devcluster.FreeAddr(), "127.0.0.1:")
	apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: webapp
  labels:
    %s: webapp
  annotations:
    %s: "%s"
    %s: "%s"
spec:
  serviceAccountName: webapp
  containers:
  - name: app
    image: nginxinc/nginx-unprivileged:stable
`, inject.LabelPolicy, inject.AnnotationListenPort, listen, inject.AnnotationMetricsPort, metrics))

	pod := &corev1.Pod{}
	if err := cluster.Env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "webapp"}, pod); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == inject.ContainerName })
	if i < 0 {
		t.Fatalf("the labelled pod has no verifier: %+v", pod.Spec)
	}
	sidecar := pod.Spec.InitContainers[i]
	if !slices.Contains(sidecar.Args, "--listen=127.0.0.1:"+listen) {
		t.Fatalf("the verifier's args %v do not follow the pod's listen-port annotation", sidecar.Args)
	}

	// In the pod, client-go reads the token and the namespace from the mount; here they are a kubeconfig and
	// --namespace. Everything else is the pod's.
	p, err := cluster.StartAs("injected-verifier", verBin, podKubeconfig(t, token), append(slices.Clone(sidecar.Args), "--namespace="+ns)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if err := p.WaitHTTP(ctx, "http://127.0.0.1:"+metrics+"/readyz", time.Minute); err != nil {
		t.Fatalf("the injected verifier is not ready (is webapp bound to the verifier role?): %v\n%s", err, p.Logs())
	}
	v := verifier{p, "http://127.0.0.1:" + listen}
	phone := v.enroll(t, "alice")
	if res := v.confirm(t, "alice", phone.code(0)); res.Status != 200 || res.result() != "confirmed" {
		t.Fatalf("confirming through the injected verifier: %v", res)
	}
	code := phone.code(1)
	if res := v.verify(t, "alice", code); res.Status != 200 || res.result() != "accepted" {
		t.Fatalf("verifying through the injected verifier: %v", res)
	}
	if res := v.verify(t, "alice", code); res.result() != "already_used" {
		t.Fatalf("a replay through the injected verifier: %v", res)
	}
}

// podKubeconfig is what the pod's projected token gives the verifier container: the API server, its CA and
// the ServiceAccount's token.
func podKubeconfig(t *testing.T, token string) string {
	t.Helper()
	cfg := cluster.Env.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa"}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
