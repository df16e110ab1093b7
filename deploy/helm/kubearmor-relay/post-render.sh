#!/usr/bin/env bash
# Helm post-renderer that adds medic to the KubeArmor chart's relay pod:
#
#   helm upgrade --install medic deploy/helm/medic -n kubearmor \
#        --set config.example=kubearmor-relay --set serviceAccount.name=kubearmor-relay \
#        --set podMonitor.selector.kubearmor-app=kubearmor-relay
#   helm upgrade --install kubearmor kubearmor/kubearmor -n kubearmor \
#        --post-renderer deploy/helm/kubearmor-relay/post-render.sh
#
# Reads the rendered manifests on stdin, writes them with the medic
# container patched into the kubearmor-relay Deployment on stdout. Needs
# kubectl (kustomize built in) or kustomize.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/all.yaml"
cp "$here/kustomization.yaml" "$here/medic-sidecar.yaml" "$work/"
if command -v kustomize >/dev/null; then
	kustomize build "$work"
else
	kubectl kustomize "$work"
fi
