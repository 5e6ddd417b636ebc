#!/usr/bin/env bash
# make run: the local control plane (or, with USE_EXISTING_CLUSTER=true, the current kubeconfig's cluster),
# kube2fa's manager and a verifier, and the samples, in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/devcluster ./cmd/devcluster
exec bin/devcluster "$@"
