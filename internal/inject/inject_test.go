package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kube2fa/kube2fa/internal/memory"
)

// admitted is a pod as the ServiceAccount admission plugin hands it to webhooks: a token volume mounted
// into every container.
func admitted() *corev1.Pod {
	token := corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
	}}}
	mount := corev1.VolumeMount{Name: token.Name, MountPath: TokenPath, ReadOnly: true}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelPolicy: "webapp"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "webapp",
			InitContainers:     []corev1.Container{{Name: "migrate", Image: "app", VolumeMounts: []corev1.VolumeMount{mount}}},
			Containers: []corev1.Container{{
				Name: "app", Image: "app",
				Ports:        []corev1.ContainerPort{{ContainerPort: 8080}},
				VolumeMounts: []corev1.VolumeMount{mount, {Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data"}, token},
		},
	}
}

func TestPodAddsTheVerifierAndTakesTheTokenFromEveryOtherContainer(t *testing.T) {
	pod := admitted()
	if err := Pod(pod, "webapp", Options{Image: "ghcr.io/kube2fa/kube2fa:v1"}); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(pod.Spec.AutomountServiceAccountToken, true); got {
		t.Error("automountServiceAccountToken is not false")
	}
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[0].Name != ContainerName {
		t.Fatalf("init containers %v: want the verifier first, then migrate", names(pod.Spec.InitContainers))
	}
	v := pod.Spec.InitContainers[0]
	if ptr.Deref(v.RestartPolicy, "") != corev1.ContainerRestartPolicyAlways {
		t.Error("the verifier is not a native sidecar (restartPolicy Always)")
	}
	if got, want := strings.Join(v.Args, " "), "--policy=webapp --listen=127.0.0.1:8089 --metrics-listen=:9090"; got != want {
		t.Errorf("args %q, want %q", got, want)
	}
	if v.Image != "ghcr.io/kube2fa/kube2fa:v1" || v.StartupProbe == nil || v.ReadinessProbe == nil || v.Resources.Limits.Memory().IsZero() {
		t.Errorf("verifier lacks its image, probes or limits: %+v", v)
	}
	if !memory.HasLimitEnv(v) {
		t.Errorf("the verifier does not tell the Go runtime its memory limit: %+v", v.Env)
	}
	if len(v.VolumeMounts) != 1 || v.VolumeMounts[0].Name != VolumeName || v.VolumeMounts[0].MountPath != TokenPath {
		t.Errorf("verifier mounts %v, want only its API access at %s", v.VolumeMounts, TokenPath)
	}
	for _, c := range append(pod.Spec.InitContainers[1:], pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.MountPath == TokenPath || m.Name == VolumeName {
				t.Errorf("container %q still mounts a token: %+v", c.Name, m)
			}
		}
	}
	var vols []string
	for _, vol := range pod.Spec.Volumes {
		vols = append(vols, vol.Name)
	}
	if got, want := strings.Join(vols, ","), "data,"+VolumeName; got != want {
		t.Errorf("volumes %s, want %s", got, want)
	}
}

func TestPodIsIdempotent(t *testing.T) {
	once := admitted()
	once.Annotations = map[string]string{AnnotationListenPort: "7000", AnnotationImage: "example.com/verifier@sha256:abc"}
	if err := Pod(once, "webapp", Options{Image: "ignored"}); err != nil {
		t.Fatal(err)
	}
	twice := once.DeepCopy()
	if err := Pod(twice, "webapp", Options{Image: "ignored"}); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(once, twice) {
		t.Errorf("a second pass changed the pod:\nonce  %+v\ntwice %+v", once.Spec, twice.Spec)
	}
	if got := once.Spec.InitContainers[0]; got.Image != "example.com/verifier@sha256:abc" || got.Args[1] != "--listen=127.0.0.1:7000" {
		t.Errorf("annotations not applied: image %s, args %v", got.Image, got.Args)
	}
}

func TestPodRefusesWhatWouldLeakTheTokenOrCannotWork(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*corev1.Pod)
		want string
	}{
		"default ServiceAccount": {func(p *corev1.Pod) { p.Spec.ServiceAccountName = "default" }, "ServiceAccount of its own"},
		"no ServiceAccount":      {func(p *corev1.Pod) { p.Spec.ServiceAccountName = "" }, "ServiceAccount of its own"},
		"an explicit token in the app": {func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "mytoken", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t", Audience: "vault"}}},
			}}})
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "mytoken", MountPath: "/vault"})
		}, `container "app" mounts a ServiceAccount token (volume "mytoken")`},
		"port not a number": {func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationListenPort: "http"} }, AnnotationListenPort + `="http" is not a port`},
		"port out of range": {func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationMetricsPort: "70000"} }, "is not a port"},
		"same ports": {func(p *corev1.Pod) {
			p.Annotations = map[string]string{AnnotationListenPort: "9000", AnnotationMetricsPort: "9000"}
		}, "same port 9000"},
		"port taken by the app": {func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationMetricsPort: "8080"} }, `container "app" already uses port 8080`},
		"empty image":           {func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationImage: " "} }, "is not an image reference"},
	} {
		t.Run(name, func(t *testing.T) {
			pod := admitted()
			tc.edit(pod)
			before := pod.DeepCopy()
			err := Pod(pod, "webapp", Options{Image: "img"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !equality.Semantic.DeepEqual(before, pod) {
				t.Error("a refused pod was changed")
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	pod := &corev1.Pod{}
	if _, ok, err := Policy(pod); ok || err != nil {
		t.Errorf("unlabelled pod: ok=%v err=%v", ok, err)
	}
	pod.Labels = map[string]string{LabelPolicy: "Web_App"}
	if _, ok, err := Policy(pod); !ok || err == nil || !strings.Contains(err.Error(), "does not name a TwoFactorPolicy") {
		t.Errorf("bad label: ok=%v err=%v", ok, err)
	}
	pod.Labels[LabelPolicy] = "webapp"
	if p, ok, err := Policy(pod); p != "webapp" || !ok || err != nil {
		t.Errorf("good label: %q ok=%v err=%v", p, ok, err)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
