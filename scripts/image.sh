#!/usr/bin/env bash
# image.sh builds medic's container image as an OCI image tarball, without
# Docker and without a registry (go-containerregistry, internal/tools/mkimage).
#
#   scripts/image.sh [--tag REF] [--version V] [--platforms linux/amd64,linux/arm64] [--out FILE]
#
# The image: a static binary (CGO_ENABLED=0, -trimpath, -s -w) at /medic (the
# entrypoint), user 65532:65532, no shell, the NSS CA roots at
# /etc/ssl/certs/ca-certificates.crt, labels org.opencontainers.image.*.
# Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: the commit
# time of HEAD), so two builds of one commit with one Go toolchain give the
# same digest (internal/tools/mkimage tests; .ci/after.d/50-image.sh).
#
# Defaults: version = the release tag on HEAD (vX.Y.Z -> X.Y.Z), else the
# chart's appVersion (deploy/helm/medic/Chart.yaml); tag =
# ghcr.io/medic-sidecar/medic:<version> (what the manifests and the chart
# reference); out = dist/medic-<version>.oci.tar; platforms = linux/amd64.
#
# Prints the tarball path, tag, digest and sizes. Load it with
#   ctr -n k8s.io images import dist/medic-0.1.0.oci.tar     (containerd, e.g. a kind/k3s node)
#   docker load -i dist/medic-0.1.0.oci.tar
#   crane push dist/medic-0.1.0.oci.tar REGISTRY/medic:TAG  (after untarring: an OCI layout)
set -euo pipefail
cd "$(dirname "$0")/.."

tag="" version="" out="" platforms="linux/amd64"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--tag) tag="$2"; shift 2 ;;
	--version) version="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	--platforms) platforms="$2"; shift 2 ;;
	-h|--help) sed -n '2,24p' "$0"; exit 0 ;;
	*) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

if [[ -z $version ]]; then
	if t=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
		version=${t#v}
	else
		version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' deploy/helm/medic/Chart.yaml)
	fi
fi
[[ -n $version ]] || { echo "image.sh: no version" >&2; exit 2; }
tag=${tag:-ghcr.io/medic-sidecar/medic:$version}
out=${out:-dist/medic-$version.oci.tar}

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $revision != unknown && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
	echo "image.sh: the worktree has uncommitted changes; revision label says $revision-dirty" >&2
	revision=$revision-dirty
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"

pkg=github.com/medic-sidecar/medic/internal/version
ldflags="-s -w -buildid= -X $pkg.Version=$version -X $pkg.Revision=$revision"
binflags=()
IFS=, read -r -a plats <<<"$platforms"
for p in "${plats[@]}"; do
	os=${p%%/*} rest=${p#*/} arch=${rest%%/*}
	bin="$work/medic-$os-$arch"
	echo "image.sh: building medic $version for $p" >&2
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch nice go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin" ./cmd/medic
	binflags+=(-binary "$p=$bin")
done

go build -o "$work/mkimage" ./internal/tools/mkimage
"$work/mkimage" -out "$out" -tag "$tag" -version "$version" -revision "$revision" \
	-created "$SOURCE_DATE_EPOCH" "${binflags[@]}"
