#!/usr/bin/env bash
# kubelet-env.sh builds the kubelet used by medic's node E2E tests
# (scripts/node-e2e.sh): kubelet v1.34.4 from the Go module proxy only, with
# every k8s.io staging module replaced by its published v0.34.4, CGO_ENABLED=0.
#
# Why 1.34: kubelets 1.35+ refuse cgroup v1 by default and newer ones drop
# containerd 1.x; the machines here have cgroup v1 and Debian's containerd 1.6.
#
# The binary is cached outside the repository, keyed by version, in
#   ${MEDIC_KUBELET_CACHE:-$HOME/.cache/medic/kubelet-1.34.4}
# and the script is a no-op when it is present. A cold build costs 5-9 min on
# 2 cores and ~1.5 GB RAM; a warm one takes seconds. Progress goes to stderr;
# stdout is only the directory as an environment assignment. Usage:
#   bash scripts/kubelet-env.sh                    # build if missing; prints MEDIC_KUBELET_BIN=<dir>
#   eval "$(bash scripts/kubelet-env.sh --print-env)"   # ... and export it
#   MEDIC_KUBELET_REBUILD=1 bash scripts/kubelet-env.sh # force a rebuild
set -euo pipefail

print_env=0
case "${1:-}" in
--print-env) print_env=1 ;;
"") ;;
*) echo "usage: $0 [--print-env]" >&2; exit 2 ;;
esac
result() {
	if [[ $print_env == 1 ]]; then
		printf 'export MEDIC_KUBELET_BIN=%q\n' "$OUT"
	else
		echo "MEDIC_KUBELET_BIN=$OUT"
	fi
}
exec 3>&1 1>&2 # progress to stderr; result() writes to fd 3

KUBE_VERSION=1.34.4
STAGING_VERSION=0.34.4

OUT="${MEDIC_KUBELET_CACHE:-$HOME/.cache/medic/kubelet-${KUBE_VERSION}}"
start=$(date +%s)

if [[ -x "$OUT/kubelet" && "${MEDIC_KUBELET_REBUILD:-}" != 1 ]]; then
	echo "kubelet-env: kubelet v${KUBE_VERSION} already in $OUT (0s)"
	result >&3
	exit 0
fi

command -v go >/dev/null || { echo "kubelet-env: go not found in PATH" >&2; exit 1; }
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
goversion=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')

# The staging modules of this release, read from k8s.io/kubernetes' own
# go.mod (its replace block points each at ./staging/src/k8s.io/NAME).
# k8s.io/sample-cli-plugin is left out: the proxy refuses it and nothing
# requires it.
gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[[ -f "$gomod" ]] || { echo "kubelet-env: cannot find go.mod of k8s.io/kubernetes v${KUBE_VERSION}" >&2; exit 1; }
mapfile -t staging < <(sed -n 's#^[[:space:]]*k8s.io/\([a-z0-9-]*\) => ./staging/src/k8s.io/.*#\1#p' "$gomod" | grep -vx sample-cli-plugin)
[[ ${#staging[@]} -gt 10 ]] || { echo "kubelet-env: no staging modules found in $gomod" >&2; exit 1; }

{
	echo "module medic.local/kubeletenv"
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
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
GO

ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=v${KUBE_VERSION}"
	ldflags+=" -X $p.gitMajor=${KUBE_VERSION%%.*}"
	minor=${KUBE_VERSION#*.}
	ldflags+=" -X $p.gitMinor=${minor%%.*}"
done

echo "kubelet-env: building kubelet v${KUBE_VERSION} (cold: 5-9 min, ~1.5 GB RAM)"
(cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$OUT/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet)
mv "$OUT/kubelet.tmp" "$OUT/kubelet"
"$OUT/kubelet" --version
echo "kubelet-env: done in $(( $(date +%s) - start ))s"
result >&3
