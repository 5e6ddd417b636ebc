// Package inject adds the verifier to a pod that asks for it with a label: the pure rules of the manager's
// mutating webhook. Pod is idempotent (a pod it has already changed comes out unchanged), so the webhook
// can be invoked again after other webhooks without adding anything twice.
package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/memory"
)

// The pod's label that asks for the verifier, and the annotations that tune it.
const (
	// LabelPolicy on a pod (its template's labels) names the TwoFactorPolicy, in the pod's namespace, whose
	// verifier it gets. The same key labels kube2fa's own objects with their policy.
	LabelPolicy = v1alpha1.LabelPolicy
	// AnnotationListenPort is the loopback port of the verifier's HTTP API (default 8089).
	AnnotationListenPort = "twofactor.kube2fa.io/listen-port"
	// AnnotationMetricsPort is the port serving the verifier's probes and metrics on the pod IP (default 9090).
	AnnotationMetricsPort = "twofactor.kube2fa.io/metrics-port"
	// AnnotationImage replaces the verifier's image (default: the manager's own version).
	AnnotationImage = "twofactor.kube2fa.io/image"
)

// Names the injected parts carry in the pod.
const (
	// ContainerName is the verifier's native sidecar: an init container with restartPolicy Always.
	ContainerName = "kube2fa-verifier"
	// VolumeName is the projected ServiceAccount token (with the cluster CA and the namespace) that only the
	// verifier container mounts.
	VolumeName = "kube2fa-verifier-api-access"
	// TokenPath is where client-go looks for the in-cluster token, CA and namespace.
	TokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// autoTokenVolumePrefix names the volume that the ServiceAccount admission plugin adds for
	// automountServiceAccountToken; it runs before webhooks, so the webhook takes it out again.
	autoTokenVolumePrefix = "kube-api-access-"
	// tokenExpirationSeconds is what the ServiceAccount admission plugin itself asks for.
	tokenExpirationSeconds = 3607
)

// Defaults of the annotations.
const (
	DefaultListenPort  = 8089
	DefaultMetricsPort = 9090
)

// Options are what the manager decides for every injected verifier.
type Options struct {
	// Image is the verifier image unless the pod's annotation names another.
	Image string
	// Resources of the verifier container (default: DefaultResources).
	Resources corev1.ResourceRequirements
}

// DefaultResources suit one verifier serving one application's logins: it remembers at most 10,000 users
// (63 MiB of RSS during a login storm, README, Performance) and spends little CPU per decision.
func DefaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
}

// Policy returns the policy a pod's labels ask for, and whether they ask for one at all. A label that
// cannot name a policy is an error that says so.
func Policy(pod *corev1.Pod) (string, bool, error) {
	policy, ok := pod.Labels[LabelPolicy]
	if !ok {
		return "", false, nil
	}
	if errs := validation.IsDNS1123Subdomain(policy); len(errs) > 0 {
		return "", true, fmt.Errorf("label %s=%q does not name a TwoFactorPolicy: %s", LabelPolicy, policy, strings.Join(errs, "; "))
	}
	return policy, true, nil
}

// Pod adds the verifier of policy to pod as a native sidecar, and makes sure that no other container holds
// the pod's ServiceAccount token: that token reads every user's key in the namespace, so it is mounted into
// the verifier container alone. It refuses a pod whose other containers mount a token of their own.
func Pod(pod *corev1.Pod, policy string, opts Options) error {
	listen, err := port(pod, AnnotationListenPort, DefaultListenPort)
	if err != nil {
		return err
	}
	metrics, err := port(pod, AnnotationMetricsPort, DefaultMetricsPort)
	if err != nil {
		return err
	}
	if listen == metrics {
		return fmt.Errorf("annotations %s and %s name the same port %d", AnnotationListenPort, AnnotationMetricsPort, listen)
	}
	image := opts.Image
	if v, ok := pod.Annotations[AnnotationImage]; ok {
		if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " \t\n") {
			return fmt.Errorf("annotation %s=%q is not an image reference", AnnotationImage, v)
		}
		image = v
	}
	if image == "" {
		return fmt.Errorf("no verifier image: set annotation %s or the manager's --verifier-image", AnnotationImage)
	}

	if sa := pod.Spec.ServiceAccountName; sa == "" || sa == "default" {
		return fmt.Errorf("the pod runs as the namespace's default ServiceAccount: give the application a ServiceAccount of its own, since kube2fa lets the ServiceAccount of a pod with the verifier read every user's OTP key")
	}
	// Check everything before changing anything: a refused pod is left as it came.
	tokens := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if holdsToken(v) && !isAutoToken(v) && v.Name != VolumeName {
			tokens[v.Name] = true
		}
	}
	for c := range others(pod) {
		for _, m := range c.VolumeMounts {
			if tokens[m.Name] {
				return fmt.Errorf("container %q mounts a ServiceAccount token (volume %q): in a pod with the verifier, that token reads every user's OTP key, so only the verifier may hold it", c.Name, m.Name)
			}
		}
		for _, p := range c.Ports {
			if p.ContainerPort == metrics || p.ContainerPort == listen {
				return fmt.Errorf("container %q already uses port %d, which the verifier needs: choose another with annotation %s or %s", c.Name, p.ContainerPort, AnnotationListenPort, AnnotationMetricsPort)
			}
		}
	}

	pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	dropped := map[string]bool{VolumeName: true}
	pod.Spec.Volumes = slices.DeleteFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		if isAutoToken(v) {
			dropped[v.Name] = true
		}
		return dropped[v.Name]
	})
	for c := range others(pod) {
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return dropped[m.Name] })
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, apiAccessVolume())
	resources := opts.Resources
	if resources.Requests == nil && resources.Limits == nil {
		resources = DefaultResources()
	}
	sidecar := Sidecar(policy, image, listen, metrics, resources)
	// The verifier starts first, so that it is ready before the application takes its first login.
	pod.Spec.InitContainers = slices.DeleteFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == ContainerName })
	pod.Spec.InitContainers = slices.Insert(pod.Spec.InitContainers, 0, sidecar)
	return nil
}

// others yields the pod's containers (init containers too) other than the verifier.
func others(pod *corev1.Pod) func(yield func(*corev1.Container) bool) {
	return func(yield func(*corev1.Container) bool) {
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for i := range list {
				if list[i].Name != ContainerName && !yield(&list[i]) {
					return
				}
			}
		}
	}
}

// port reads a port annotation, or def.
func port(pod *corev1.Pod, annotation string, def int32) (int32, error) {
	v, ok := pod.Annotations[annotation]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("annotation %s=%q is not a port (1-65535)", annotation, v)
	}
	return int32(n), nil
}

// isAutoToken tells the volume that the ServiceAccount admission plugin adds.
func isAutoToken(v corev1.Volume) bool {
	return strings.HasPrefix(v.Name, autoTokenVolumePrefix) && holdsToken(v)
}

// holdsToken tells a projected volume with a ServiceAccount token in it.
func holdsToken(v corev1.Volume) bool {
	if v.Projected == nil {
		return false
	}
	return slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil })
}

// apiAccessVolume is what automountServiceAccountToken would mount, for the verifier container only.
func apiAccessVolume() corev1.Volume {
	return corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o444),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](tokenExpirationSeconds)}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
			}}}},
		},
	}}}
}

// Sidecar is the verifier container for policy: a native sidecar (restartPolicy Always) serving its API on
// loopback only, its probes and metrics on the pod IP, and within Pod Security "restricted".
func Sidecar(policy, image string, listen, metrics int32, resources corev1.ResourceRequirements) corev1.Container {
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("kube2fa-metrics")}},
			PeriodSeconds:    period,
			FailureThreshold: failures,
		}
	}
	return corev1.Container{
		Name:            ContainerName,
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
		Command:         []string{"/verifier"},
		Args: []string{
			"--policy=" + policy,
			fmt.Sprintf("--listen=127.0.0.1:%d", listen),
			fmt.Sprintf("--metrics-listen=:%d", metrics),
		},
		Ports: []corev1.ContainerPort{{Name: "kube2fa-metrics", ContainerPort: metrics, Protocol: corev1.ProtocolTCP}},
		// Start-up waits for the caches to sync (up to a minute); readiness then follows the verifier's own
		// staleness bound, and liveness only a process that stopped answering.
		StartupProbe:   probe("/readyz", 2, 30),
		ReadinessProbe: probe("/readyz", 10, 1),
		LivenessProbe:  probe("/healthz", 20, 3),
		Resources:      resources,
		Env:            []corev1.EnvVar{memory.LimitEnv(ContainerName)},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: VolumeName, MountPath: TokenPath, ReadOnly: true}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}
