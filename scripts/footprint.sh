#!/usr/bin/env bash
# footprint.sh — steady-state memory and CPU of `medic run`, side by side
# with a base commit's binary in the same run, measured from /proc.
#
# Builds both binaries the way the image does (CGO_ENABLED=0 -trimpath
# -ldflags "-s -w"), starts one SPIRE-like peer (so the example config has a
# real page to scrape), runs both medics against it for DURATION, samples
# VmRSS / RssAnon / RssFile every 10 s, and prints per binary: size, time
# from exec to /readyz 200 (without Kubernetes, best of 5), min/avg/max
# RSS, RssAnon first/last (flat once the store has filled), CPU, and what
# package initialisation alone maps (before the config is read).
#
#   scripts/footprint.sh [DURATION_SECONDS] [CONFIG] [BASE_REF]
#   (defaults: 600 s, examples/spire-agent.yaml, HEAD~1; BASE_REF "none" skips the base)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
config=${2:-examples/spire-agent.yaml}
base=${3:-HEAD~1}
work=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  [ -d "$work/base-src" ] && git worktree remove --force "$work/base-src" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

build() { # build SRC_DIR OUT
  (cd "$1" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$2" ./cmd/medic)
}
names=(current)
build . "$work/current"
if [ "$base" != none ]; then
  git worktree add --detach -q "$work/base-src" "$base"
  build "$work/base-src" "$work/base"
  names+=(base)
fi

# One peer: the SPIRE agent page on :9988 (the example's scrape URL) and a TCP "server" on :8081.
"$work/current" demo-peer --listen 127.0.0.1:9988 --server 127.0.0.1:8081 >"$work/peer.log" 2>&1 &
sleep 1
export SPIRE_SERVER_ADDRESS=127.0.0.1:8081

# Each medic gets its own copy of the config with its own port and state dir.
port=19555
declare -A pid cfgfile portof
for n in "${names[@]}"; do
  sed -E "s/^listen: .*/listen: \"127.0.0.1:$port\"/" "$config" >"$work/$n.yaml"
  cfgfile[$n]="$work/$n.yaml"; portof[$n]=$port
  port=$((port + 1))
done

# Start-up to ready, without Kubernetes: exec → first 200 from /readyz, best
# of 5; and the CPU time the process used until then (user+system, best of 5:
# on a loaded machine the wall time is mostly waiting for a core).
ready_ms() { # NAME → "WALL_MS CPU_MS"
  local n=$1 best="" bestcpu="" i t0 t1 p c hz
  hz=$(getconf CLK_TCK)
  for i in 1 2 3 4 5; do
    rm -rf "$work/state-$n"
    t0=$(date +%s%N)
    MEDIC_STATE_DIR="$work/state-$n" "$work/$n" run --config "${cfgfile[$n]}" >"$work/$n-ready.log" 2>&1 &
    p=$!
    until curl -fs -o /dev/null "http://127.0.0.1:${portof[$n]}/readyz"; do
      kill -0 "$p" 2>/dev/null || { cat "$work/$n-ready.log"; return 1; }
      sleep 0.005
    done
    t1=$(date +%s%N)
    c=$(awk -v hz="$hz" '{printf "%d", ($14+$15)*1000/hz}' "/proc/$p/stat")
    kill "$p"; wait "$p" 2>/dev/null || true
    local ms=$(( (t1 - t0) / 1000000 ))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    if [ -z "$bestcpu" ] || [ "$c" -lt "$bestcpu" ]; then bestcpu=$c; fi
  done
  echo "$best $bestcpu"
}
declare -A ready
for n in "${names[@]}"; do ready[$n]=$(ready_ms "$n"); done

# What package initialisation alone maps: medic blocks opening a FIFO as its
# config, after every package's init ran and before it reads anything.
# Each touch of the binary maps the 64 KiB around it (the kernel's
# fault-around), so this is the floor the run path adds to. Best of 3.
mkfifo "$work/fifo"
init_rss() { # NAME
  local n=$1 i p best=""
  for i in 1 2 3; do
    "$work/$n" run --config "$work/fifo" >/dev/null 2>&1 &
    p=$!
    sleep 2
    local r
    r=$(awk '/^VmRSS/{v=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{printf "%d %.1f %.1f %.1f", v, v/1024, a/1024, f/1024}' "/proc/$p/status")
    kill -9 "$p"; wait "$p" 2>/dev/null || true
    if [ -z "$best" ] || [ "${r%% *}" -lt "${best%% *}" ]; then best=$r; fi
  done
  echo "${best#* }"
}
declare -A initrss
for n in "${names[@]}"; do initrss[$n]=$(init_rss "$n"); done

for n in "${names[@]}"; do
  rm -rf "$work/state-$n"
  MEDIC_STATE_DIR="$work/state-$n" "$work/$n" run --config "${cfgfile[$n]}" >"$work/$n.log" 2>&1 &
  pid[$n]=$!
done
sleep 2
for n in "${names[@]}"; do kill -0 "${pid[$n]}" || { cat "$work/$n.log"; exit 1; }; done

hz=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# VmRSS, and its parts: RssAnon (heap, stacks: medic's private memory) and
# RssFile (pages of the binary mapped from the page cache, which a
# container's memory cgroup is charged for).
rss() { awk '/^VmRSS/{v=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{print v, a, f}' "/proc/$1/status"; }
sleep 10 # skip start-up
declare -A c0 samples
# The binary's pages the process really uses while sampling: clear the
# pages' referenced bits now, read smaps' Referenced for the binary's
# mappings at the end (the rest of RssFile was touched once, at start-up).
for n in "${names[@]}"; do c0[$n]=$(cpu "${pid[$n]}"); : >"$work/$n.samples"; echo 1 >"/proc/${pid[$n]}/clear_refs" || true; done
binref() { # PID BINARY: KiB of the binary's mapped pages referenced since clear_refs
  awk -v bin="$2" '/^[0-9a-f]+-[0-9a-f]+ /{m=($6==bin)} m&&/^Referenced:/{s+=$2} END{print s+0}' "/proc/$1/smaps"
}
t0=$(date +%s.%N)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
end=$(( $(date +%s) + duration ))
while [ "$(date +%s)" -lt "$end" ]; do
  for n in "${names[@]}"; do rss "${pid[$n]}" >>"$work/$n.samples"; done
  sleep 10
done
t1=$(date +%s.%N)
echo "load average at start of sampling: $load0; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A ref
for n in "${names[@]}"; do ref[$n]=$(binref "${pid[$n]}" "$work/$n"); done
for n in "${names[@]}"; do
  c1=$(cpu "${pid[$n]}")
  size=$(stat -c %s "$work/$n")
  rev=$( [ "$n" = base ] && git rev-parse --short "$base" || echo "working tree" )
  set -- ${ready[$n]}
  echo "== $n ($rev): binary $(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}'), ready in $1 ms (CPU until ready: $2 ms)"
  set -- ${initrss[$n]}
  echo "  after package init only: VmRSS $1 MiB (RssAnon $2, RssFile $3)"
  awk -v c0="${c0[$n]}" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v ref="${ref[$n]}" '
    { r[NR]=$1; s+=$1; n++; if (min==""||$1<min) min=$1; if ($1>max) max=$1; if (n==1) {first=$1; afirst=$2}; last=$1; alast=$2
      sa+=$2; if (amin==""||$2<amin) amin=$2; if ($2>amax) amax=$2; sf+=$3 }
    END {
      secs=t1-t0; mc=((c1-c0)/hz)/secs*1000
      printf "  samples: %d over %.0f s\n", n, secs
      printf "  VmRSS MiB: min %.1f avg %.1f max %.1f (first %.1f, last %.1f)\n", min/1024, s/n/1024, max/1024, first/1024, last/1024
      printf "  RssAnon MiB: min %.1f avg %.1f max %.1f (first %.1f, last %.1f); RssFile avg %.1f\n", amin/1024, sa/n/1024, amax/1024, afirst/1024, alast/1024, sf/n/1024
      printf "  binary pages referenced while sampling: %.1f MiB\n", ref/1024
      printf "  CPU: %.2f millicores average\n", mc
      printf "  VmRSS MiB by minute:"; for (i=1;i<=n;i+=6) printf " %.1f", r[i]/1024; printf "\n"
    }' "$work/$n.samples"
done
