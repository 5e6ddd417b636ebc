#!/usr/bin/env bash
# make run: the local control plane, kube2fa's manager and the samples, in the foreground until Ctrl-C.
# With USE_EXISTING_CLUSTER=true, runs the manager against the current kubeconfig instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ "${USE_EXISTING_CLUSTER:-}" == "true" ]]; then
  make install
  exec bin/manager
fi
go build -o bin/devcluster ./cmd/devcluster
exec bin/devcluster "$@"
