#!/usr/bin/env bash
# Checks that committed generated code matches its sources.
#
#   scripts/check-generated.sh       regenerate into a temp copy; fail on any difference
#   scripts/check-generated.sh -w    regenerate in place
#
# Installs what it needs: protoc from Debian's protobuf-compiler (apt) and the
# pinned Go plugins (go install from the module proxy) into a cache dir.
# The protoc version line in generated headers is ignored, so a Debian point
# release of protoc does not count as drift.
set -euo pipefail

PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# Packages whose //go:generate directives run protoc.
GEN_PKGS=(./internal/relayapi)

root=$(cd "$(dirname "$0")/.." && pwd)
write=0
[[ "${1:-}" == "-w" ]] && write=1

if ! command -v protoc >/dev/null 2>&1; then
	echo "check-generated: installing protobuf-compiler" >&2
	if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null
fi

tools=${MEDIC_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/medic-tools/bin}
mkdir -p "$tools"
stamp="$tools/.versions"
want="$PROTOC_GEN_GO $PROTOC_GEN_GO_GRPC"
if [[ ! -x "$tools/protoc-gen-go" || ! -x "$tools/protoc-gen-go-grpc" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
	echo "check-generated: installing $want" >&2
	for t in "$PROTOC_GEN_GO" "$PROTOC_GEN_GO_GRPC"; do (cd "$root" && GOFLAGS= GOBIN="$tools" go install "$t"); done
	echo "$want" >"$stamp"
fi
export PATH="$tools:$PATH"

if [[ $write -eq 1 ]]; then
	(cd "$root" && go generate "${GEN_PKGS[@]}")
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A temp copy of the tracked tree (plus untracked, unignored files), so the
# check sees exactly what would be committed and never touches the work tree.
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp" 2>/dev/null || true)
(cd "$tmp" && go generate "${GEN_PKGS[@]}")

strip() { grep -Ev '^//[[:space:]]+(-[[:space:]]+)?protoc[[:space:]]+v' "$1"; }
fail=0
for pkg in "${GEN_PKGS[@]}"; do
	for f in "$tmp/$pkg"/*.pb.go; do
		rel=${f#"$tmp/"}
		if [[ ! -f "$root/$rel" ]]; then
			echo "check-generated: $rel is generated but not committed" >&2
			fail=1
		elif ! diff -u <(strip "$root/$rel") <(strip "$f") >&2; then
			echo "check-generated: $rel differs from what its source generates (run scripts/check-generated.sh -w)" >&2
			fail=1
		fi
	done
	for f in "$root/$pkg"/*.pb.go; do
		rel=${f#"$root/"}
		[[ -f "$tmp/$rel" ]] || { echo "check-generated: $rel is committed but no longer generated" >&2; fail=1; }
	done
done
[[ $fail -eq 0 ]] && echo "check-generated: generated code is up to date"
exit $fail
