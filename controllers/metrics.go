package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// policyEnrollments is each policy's enrollments by state, as its status counts them: the admin grid's
// totals for dashboards and alerts, served with the manager's other metrics. Labels name policies, never users.
var policyEnrollments = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "kube2fa_policy_enrollments",
	Help: "UserEnrollments of a TwoFactorPolicy by state (total, confirmed, pending, locked), as its status counts them.",
}, []string{"namespace", "policy", "state"})

func init() { metrics.Registry.MustRegister(policyEnrollments) }

// MetricCollectors are the metrics of kube2fa's own the manager serves (beside controller-runtime's).
func MetricCollectors() []prometheus.Collector { return []prometheus.Collector{policyEnrollments} }

// recordCounts exports a policy's counts.
func recordCounts(p *v1alpha1.TwoFactorPolicy, c v1alpha1.EnrollmentCounts) {
	for state, n := range map[string]int32{"total": c.Total, "confirmed": c.Confirmed, "pending": c.Pending, "locked": c.Locked} {
		policyEnrollments.WithLabelValues(p.Namespace, p.Name, state).Set(float64(n))
	}
}

// forgetCounts drops a deleted policy's counts.
func forgetCounts(namespace, name string) {
	policyEnrollments.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "policy": name})
}
