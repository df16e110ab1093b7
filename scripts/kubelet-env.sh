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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
env_script_init MEDIC_KUBELET_BIN "$@"

KUBE_VERSION=1.34.4
STAGING_VERSION=0.34.4

OUT="${MEDIC_KUBELET_CACHE:-$HOME/.cache/medic/kubelet-${KUBE_VERSION}}"
REBUILD=${MEDIC_KUBELET_REBUILD:-}
start=$(date +%s)

if [[ -x "$OUT/kubelet" && $REBUILD != 1 ]]; then
	echo "kubelet-env: kubelet v${KUBE_VERSION} already in $OUT (0s)"
	env_script_result
	exit 0
fi

go_build_init
k8s_build_init "$KUBE_VERSION" "$STAGING_VERSION"
build_cached kubelet k8s.io/kubernetes/cmd/kubelet "k8s.io/kubernetes v${KUBE_VERSION}" "${k8s_replaces[@]}"
"$OUT/kubelet" --version
echo "kubelet-env: done in $(( $(date +%s) - start ))s"
env_script_result
