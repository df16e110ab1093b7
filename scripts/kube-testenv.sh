#!/usr/bin/env bash
# kube-testenv.sh builds the control plane used by medic's Kubernetes tests:
# kube-apiserver v1.36.3 and etcd v3.6.8, from the Go module proxy only.
#
# The binaries are cached outside the repository, keyed by version, in
#   ${MEDIC_KUBE_CACHE:-$HOME/.cache/medic/kube-1.36.3}
# and the script is a no-op when both are present. A cold build costs
# 4-10 min on 2 cores and ~2 GB RAM; a warm one takes seconds.
#
# The build recipe is shared with scripts/kubelet-env.sh (scripts/lib.sh).
#
# Tests find the binaries through MEDIC_KUBE_BIN or the same default cache
# directory (see internal/kubetest). Progress goes to stderr; stdout is only
# the directory as an environment assignment. Usage:
#   bash scripts/kube-testenv.sh                  # build if missing; prints MEDIC_KUBE_BIN=<dir>
#   eval "$(bash scripts/kube-testenv.sh --print-env)"   # ... and export it (CI)
#   MEDIC_KUBE_REBUILD=1 bash scripts/kube-testenv.sh   # force a rebuild
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
env_script_init MEDIC_KUBE_BIN "$@"

KUBE_VERSION=1.36.3
STAGING_VERSION=0.36.3
ETCD_VERSION=3.6.8

OUT="${MEDIC_KUBE_CACHE:-$HOME/.cache/medic/kube-${KUBE_VERSION}}"
REBUILD=${MEDIC_KUBE_REBUILD:-}
start=$(date +%s)

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" && $REBUILD != 1 ]]; then
	echo "kube-testenv: kube-apiserver v${KUBE_VERSION} and etcd v${ETCD_VERSION} already in $OUT (0s)"
	env_script_result
	exit 0
fi

go_build_init
build_cached etcd go.etcd.io/etcd/server/v3 "go.etcd.io/etcd/server/v3 v${ETCD_VERSION}"
k8s_build_init "$KUBE_VERSION" "$STAGING_VERSION"
build_cached kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "k8s.io/kubernetes v${KUBE_VERSION}" "${k8s_replaces[@]}"

"$OUT/kube-apiserver" --version
"$OUT/etcd" --version | head -1
echo "kube-testenv: done in $(( $(date +%s) - start ))s"
env_script_result
