// Package memory holds how kube2fa's processes size their Go heap.
package memory

import (
	"os"
	"runtime/debug"

	corev1 "k8s.io/api/core/v1"
)

// GCPercent is the manager's GOGC unless the environment sets one. What it holds is about a kilobyte per
// enrollment, and the Go default lets the heap grow to twice what is live before it collects: at 100,000
// enrollments that headroom would be most of its memory. Half of it costs a little more CPU in the collector
// (README, Performance). A verifier, whose heap does not grow with its policy, collects at the Go default.
const GCPercent = 50

// SetGCPercent sets GCPercent, unless the environment sets GOGC.
func SetGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}

// LimitEnv is the environment variable that tells the Go runtime of container its memory limit (GOMEMLIMIT,
// from the Downward API): the collector then works harder as the process nears the limit, rather than let
// a burst's garbage reach the OOM killer.
func LimitEnv(container string) corev1.EnvVar {
	return corev1.EnvVar{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{
		ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: container, Resource: "limits.memory"}}}
}

// HasLimitEnv reports whether container c tells the Go runtime its own memory limit (LimitEnv), and has one.
func HasLimitEnv(c corev1.Container) bool {
	if c.Resources.Limits.Memory().IsZero() {
		return false
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		ref := e.ValueFrom
		return ref != nil && ref.ResourceFieldRef != nil && ref.ResourceFieldRef.Resource == "limits.memory" &&
			(ref.ResourceFieldRef.ContainerName == "" || ref.ResourceFieldRef.ContainerName == c.Name) &&
			ref.ResourceFieldRef.Divisor.IsZero()
	}
	return false
}
