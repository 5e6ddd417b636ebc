// Package injection holds the tests of sidecar injection by label against a real API server that calls the
// manager's webhook: config/default's webhook configuration and RBAC, the manager's certificate rotation,
// Pod Security "restricted", and the ServiceAccount admission plugin a real cluster runs.
package injection
