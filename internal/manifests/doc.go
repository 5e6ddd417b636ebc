// Package manifests holds tests proving the deployable manifests under config/ are valid for a real API server.
package manifests
