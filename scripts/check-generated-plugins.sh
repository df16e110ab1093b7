#!/usr/bin/env bash
# check-generated-plugins.sh — regenerate the remediation plugin protocol
# (plugins/proto) with pinned tools and fail if the committed code differs.
#
#   scripts/check-generated-plugins.sh        check (CI): exit 1 on drift
#   scripts/check-generated-plugins.sh -w     regenerate in place
#   scripts/check-generated-plugins.sh [-w] DIR...   other go:generate'd proto packages
#
# Tools: protoc from Debian (protobuf-compiler + libprotobuf-dev for the
# well-known types, installed with apt-get when missing), protoc-gen-go and
# protoc-gen-go-grpc at the versions pinned below (go install into a cache
# directory; go.mod is not touched). The check regenerates into a temp
# copy of the tree and ignores the protoc version line of the headers.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_VERSION=3.21.12        # Debian bookworm's protobuf-compiler
PROTOC_GEN_GO=v1.36.12        # keep equal to google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC=v1.6.2

write=false
if [[ ${1:-} == -w ]]; then write=true; shift; fi
dirs=("$@")
[[ ${#dirs[@]} -gt 0 ]] || dirs=(plugins/proto)

if ! command -v protoc >/dev/null || [[ ! -f /usr/include/google/protobuf/struct.proto ]]; then
  echo "installing protoc (protobuf-compiler, libprotobuf-dev) with apt-get" >&2
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
fi
have=$(protoc --version | awk '{print $2}')
if [[ $have != "$PROTOC_VERSION" ]]; then
  echo "note: protoc $have found, $PROTOC_VERSION pinned (only the version line of the headers differs)" >&2
fi

tools=${MEDIC_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/medic-tools}/protoc-gen-go-$PROTOC_GEN_GO-grpc-$PROTOC_GEN_GO_GRPC
if [[ ! -x $tools/protoc-gen-go || ! -x $tools/protoc-gen-go-grpc ]]; then
  mkdir -p "$tools"
  GOBIN=$tools GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
  GOBIN=$tools GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
fi
export PATH="$tools:$PATH"

if $write; then
  go generate "${dirs[@]/#/./}"
  echo "regenerated: ${dirs[*]}"
  exit 0
fi

# Check: regenerate in a temp copy of the tree (tracked and untracked,
# unignored files), so the work tree is never touched, and compare,
# ignoring the protoc version line of the headers.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp"
(cd "$tmp" && go generate "${dirs[@]/#/./}")
strip() { grep -Ev '^//[[:space:]]+(-[[:space:]]+)?protoc[[:space:]]+v' "$1"; }
fail=0
for d in "${dirs[@]}"; do
  for f in "$tmp/$d"/*.pb.go; do
    rel=${f#"$tmp/"}
    if [[ ! -f $rel ]]; then
      echo "$rel is generated but not committed" >&2; fail=1
    elif ! diff -u <(strip "$rel") <(strip "$f") >&2; then
      echo "$rel differs from what its .proto generates" >&2; fail=1
    fi
  done
  for f in "$d"/*.pb.go; do
    [[ -f "$tmp/$f" ]] || { echo "$f is committed but no longer generated" >&2; fail=1; }
  done
done
if [[ $fail -ne 0 ]]; then
  echo "generated code is stale: run scripts/check-generated-plugins.sh -w and commit" >&2
  exit 1
fi
echo "generated code up to date: ${dirs[*]}"
