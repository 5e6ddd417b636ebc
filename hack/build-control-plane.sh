#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager) from their Go modules at
# pinned versions into bin/k8s, because no release binary can be downloaded on the machines kube2fa is
# developed and tested on. Binaries already present are kept; KUBEBUILDER_ASSETS, when set, wins.
#
# Usage: hack/build-control-plane.sh [OUT_DIR]   (default: bin/k8s)
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/k8s}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in etcd kube-apiserver kube-controller-manager; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $b" >&2; exit 1; }
  done
  echo "Using the control plane in KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  exit 0
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/.build"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

# progress prints one line per 200 packages compiled, so a 10-minute build is visibly alive.
progress() {
  awk -v what="$1" '{ n++; if (n % 200 == 0) { printf "  %s: %d packages compiled\n", what, n; fflush() } }
                    END { printf "  %s: %d packages compiled\n", what, n }'
}

build_etcd() {
  if [[ -x "$out/etcd" ]]; then echo "etcd: already built ($out/etcd)"; return; fi
  echo "etcd $ETCD_VERSION: building from go.etcd.io/etcd/server/v3 (a few minutes on a cold cache)"
  local dir="$work/etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module kube2fa.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
)
MOD
  cat >"$dir/main.go" <<'GO'
// Command etcd is etcd's own main, built from go.etcd.io/etcd/server/v3 (whose module has no main package).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && go mod tidy)
  (cd "$dir" && go build -v -trimpath -ldflags '-s -w' -o "$out/etcd.tmp" . 2>&1 | progress etcd)
  mv "$out/etcd.tmp" "$out/etcd"
  echo "etcd: built $out/etcd"
}

build_kubernetes() {
  local missing=()
  for b in kube-apiserver kube-controller-manager; do [[ -x "$out/$b" ]] || missing+=("$b"); done
  if [[ ${#missing[@]} -eq 0 ]]; then echo "kube-apiserver, kube-controller-manager: already built"; return; fi
  echo "${missing[*]} $KUBERNETES_VERSION: building from k8s.io/kubernetes (10-15 minutes on 2 cores, cold)"
  local dir="$work/kubernetes"
  rm -rf "$dir" && mkdir -p "$dir"
  # k8s.io/kubernetes replaces its staging modules with ./staging paths; point each at its published version.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    printf 'module kube2fa.local/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
    awk '/=> \.\/staging/ { print $1 }' "$gomod" | grep -v '^k8s.io/sample-' |
      while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
    printf ')\n'
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

// Package tools pins the commands this wrapper module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
  (cd "$dir" && go mod tidy)
  local pkg=k8s.io/component-base/version
  local major minor
  IFS=. read -r major minor _ <<<"${KUBERNETES_VERSION#v}"
  local ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  mkdir -p "$dir/out"
  (cd "$dir" && go build -v -trimpath -ldflags "$ldflags" -o "$dir/out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager 2>&1 | progress kubernetes)
  for b in kube-apiserver kube-controller-manager; do mv "$dir/out/$b" "$out/$b"; done
  echo "kube-apiserver, kube-controller-manager: built into $out"
}

build_etcd
build_kubernetes
rm -rf "$work"
"$out/kube-apiserver" --version
# No pipe into head here: with pipefail, etcd would die of SIGPIPE when head exits first.
etcd_version=$("$out/etcd" --version)
echo "${etcd_version%%$'\n'*}"
