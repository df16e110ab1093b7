# lib.sh: what scripts/kube-testenv.sh and scripts/kubelet-env.sh share —
# build a Go command from the module proxy into a cache directory keyed by
# version, once, and print that directory as an environment assignment.
# Sourced, not run. A script sets OUT (the cache directory) and REBUILD
# (1 forces a rebuild), then:
#   env_script_init VAR "$@"   # --print-env or nothing; progress to stderr from here on
#   go_build_init              # go in PATH, $work (removed on exit), static builds
#   build_cached NAME PKG REQUIRE [REPLACE...]   # $OUT/NAME unless present
#   env_script_result          # VAR=$OUT (or export VAR=... with --print-env) on stdout

# env_script_init parses the script's arguments; VAR names the variable
# env_script_result prints. Stdout is kept for the result (fd 3).
env_script_init() {
	env_var=$1
	shift
	print_env=0
	case "${1:-}" in
	--print-env) print_env=1 ;;
	"") ;;
	*) echo "usage: $0 [--print-env]" >&2; exit 2 ;;
	esac
	exec 3>&1 1>&2 # progress to stderr; env_script_result writes to fd 3
}

env_script_result() {
	if [[ $print_env == 1 ]]; then
		printf 'export %s=%q\n' "$env_var" "$OUT" >&3
	else
		echo "$env_var=$OUT" >&3
	fi
}

# go_build_init prepares static, module-proxy-only builds into $OUT.
go_build_init() {
	command -v go >/dev/null || { echo "$(basename "$0"): go not found in PATH" >&2; exit 1; }
	mkdir -p "$OUT"
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
	goversion=$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')
	ldflags="-s -w"
}

# k8s_build_init VERSION STAGING_VERSION sets what building a command of
# k8s.io/kubernetes needs: k8s_replaces (every staging module, at v0.0.0
# in its go.mod, replaced by its published STAGING_VERSION, read from that
# go.mod's own replace block; k8s.io/sample-cli-plugin is left out: the
# proxy refuses it and nothing requires it) and the version in ldflags.
k8s_build_init() {
	local version=$1 staging_version=$2 gomod m p minor
	gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@v${version}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[[ -f "$gomod" ]] || { echo "$(basename "$0"): cannot find go.mod of k8s.io/kubernetes v${version}" >&2; exit 1; }
	k8s_replaces=()
	for m in $(sed -n 's#^[[:space:]]*k8s.io/\([a-z0-9-]*\) => ./staging/src/k8s.io/.*#\1#p' "$gomod" | grep -vx sample-cli-plugin); do
		k8s_replaces+=("k8s.io/$m => k8s.io/$m v${staging_version}")
	done
	[[ ${#k8s_replaces[@]} -gt 10 ]] || { echo "$(basename "$0"): no staging modules found in $gomod" >&2; exit 1; }
	minor=${version#*.}
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=v${version} -X $p.gitMajor=${version%%.*} -X $p.gitMinor=${minor%%.*}"
	done
}

# build_cached NAME PKG REQUIRE [REPLACE...] builds the main package PKG,
# from a module that requires REQUIRE ("module vX.Y.Z") with the given
# replace lines, into $OUT/NAME (through NAME.tmp, so an interrupted build
# leaves nothing half-written), unless it is there and REBUILD is not 1.
build_cached() {
	local name=$1 pkg=$2 require=$3 dir t0 r
	shift 3
	if [[ -x "$OUT/$name" && "${REBUILD:-}" != 1 ]]; then
		echo "$(basename "$0"): $name already in $OUT"
		return
	fi
	dir="$work/$name"
	mkdir -p "$dir"
	{
		printf 'module medic.local/%s-env\n\ngo %s\n\nrequire %s\n' "$name" "$goversion" "$require"
		if [[ $# -gt 0 ]]; then
			printf '\nreplace (\n'
			for r in "$@"; do printf '\t%s\n' "$r"; done
			printf ')\n'
		fi
	} >"$dir/go.mod"
	printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$dir/tools.go"
	echo "$(basename "$0"): building $name (${require#* })"
	t0=$(date +%s)
	(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$OUT/$name.tmp" "$pkg")
	mv "$OUT/$name.tmp" "$OUT/$name"
	echo "$(basename "$0"): $name built in $(($(date +%s) - t0))s"
}
