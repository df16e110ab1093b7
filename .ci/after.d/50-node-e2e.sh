#!/usr/bin/env bash
# Node E2E (issue 9): medic's sidecar modes in real pods on a real kubelet
# (v1.34, built from the Go module proxy and cached by version in
# ~/.cache/medic/kubelet-1.34.4) with Debian's containerd and runc,
# registered with the project's kube-apiserver. Needs root.
# Cold: ~5-9 min kubelet build + ~1 min set-up + the tests; cached: set-up ~1 min.
set -euo pipefail
cd "$(dirname "$0")/../.."
apt_install containerd runc containernetworking-plugins openssl curl jq iproute2
export MEDIC_REQUIRE_NODE=1
bash scripts/node-e2e.sh
