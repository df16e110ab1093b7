#!/usr/bin/env bash
# kube-testenv.sh builds the control plane used by medic's Kubernetes tests:
# kube-apiserver v1.36.3 and etcd v3.6.8, from the Go module proxy only.
#
# The binaries are cached outside the repository, keyed by version, in
#   ${MEDIC_KUBE_CACHE:-$HOME/.cache/medic/kube-1.36.3}
# and the script is a no-op when both are present. A cold build costs
# 4-10 min on 2 cores and ~2 GB RAM; a warm one takes seconds.
#
# Tests find the binaries through MEDIC_KUBE_BIN or the same default cache
# directory (see internal/kubetest). Progress goes to stderr; stdout is only
# the directory as an environment assignment. Usage:
#   bash scripts/kube-testenv.sh                  # build if missing; prints MEDIC_KUBE_BIN=<dir>
#   eval "$(bash scripts/kube-testenv.sh --print-env)"   # ... and export it (CI)
#   MEDIC_KUBE_REBUILD=1 bash scripts/kube-testenv.sh   # force a rebuild
set -euo pipefail

print_env=0
case "${1:-}" in
--print-env) print_env=1 ;;
"") ;;
*) echo "usage: $0 [--print-env]" >&2; exit 2 ;;
esac
result() {
	if [[ $print_env == 1 ]]; then
		printf 'export MEDIC_KUBE_BIN=%q\n' "$OUT"
	else
		echo "MEDIC_KUBE_BIN=$OUT"
	fi
}
exec 3>&1 1>&2 # progress to stderr; result() writes to fd 3

KUBE_VERSION=1.36.3
STAGING_VERSION=0.36.3
ETCD_VERSION=3.6.8

OUT="${MEDIC_KUBE_CACHE:-$HOME/.cache/medic/kube-${KUBE_VERSION}}"
start=$(date +%s)

have() { [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" ]]; }

if have && [[ "${MEDIC_KUBE_REBUILD:-}" != 1 ]]; then
	echo "kube-testenv: kube-apiserver v${KUBE_VERSION} and etcd v${ETCD_VERSION} already in $OUT (0s)"
	result >&3
	exit 0
fi

command -v go >/dev/null || { echo "kube-testenv: go not found in PATH" >&2; exit 1; }
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
goversion=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')

# --- kube-apiserver -------------------------------------------------------
# k8s.io/kubernetes requires its staging modules at v0.0.0; replace every one
# of them with the published v0.<minor>.<patch>. k8s.io/sample-cli-plugin is
# left out on purpose: the proxy refuses it and nothing requires it.
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
	cloud-provider cluster-bootstrap code-generator component-base component-helpers
	controller-manager cri-api cri-client cri-streaming csi-translation-lib
	dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
	kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
	mount-utils pod-security-admission sample-apiserver sample-controller streaming)

mkdir -p "$work/apiserver"
{
	echo "module medic.local/kubetestenv"
	echo
	echo "go ${goversion}"
	echo
	echo "require k8s.io/kubernetes v${KUBE_VERSION}"
	echo
	echo "replace ("
	for m in "${staging[@]}"; do
		echo "	k8s.io/$m => k8s.io/$m v${STAGING_VERSION}"
	done
	echo ")"
} >"$work/apiserver/go.mod"
cat >"$work/apiserver/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO

ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=v${KUBE_VERSION}"
	ldflags+=" -X $p.gitMajor=${KUBE_VERSION%%.*}"
	minor=${KUBE_VERSION#*.}
	ldflags+=" -X $p.gitMinor=${minor%%.*}"
done

if [[ -x "$OUT/kube-apiserver" && "${MEDIC_KUBE_REBUILD:-}" != 1 ]]; then
	echo "kube-testenv: kube-apiserver already in $OUT"
else
	echo "kube-testenv: building kube-apiserver v${KUBE_VERSION} (cold: 4-10 min, ~2 GB RAM)"
	t0=$(date +%s)
	(cd "$work/apiserver" && go build -trimpath -ldflags "$ldflags" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
	mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
	echo "kube-testenv: kube-apiserver built in $(( $(date +%s) - t0 ))s"
fi

# --- etcd -----------------------------------------------------------------
mkdir -p "$work/etcd"
cat >"$work/etcd/go.mod" <<GOMOD
module medic.local/etcdtestenv

go ${goversion}

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
GOMOD
cat >"$work/etcd/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
if [[ -x "$OUT/etcd" && "${MEDIC_KUBE_REBUILD:-}" != 1 ]]; then
	echo "kube-testenv: etcd already in $OUT"
else
	echo "kube-testenv: building etcd v${ETCD_VERSION}"
	t0=$(date +%s)
	(cd "$work/etcd" && go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3)
	mv "$OUT/etcd.tmp" "$OUT/etcd"
	echo "kube-testenv: etcd built in $(( $(date +%s) - t0 ))s"
fi

"$OUT/kube-apiserver" --version
"$OUT/etcd" --version | head -1
echo "kube-testenv: done in $(( $(date +%s) - start ))s"
result >&3
