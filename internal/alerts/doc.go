// Package alerts holds no code: its tests check kube2fa's Prometheus alerts (config/prometheus) with the real
// promtool, and that the PrometheusRule ships the same rules as the file promtool tests.
package alerts
