#!/usr/bin/env bash
# footprint.sh — steady-state RSS and CPU of `medic run` with a config,
# measured from /proc. Starts a SPIRE-like peer (so the example config has a
# real page to scrape), runs medic for DURATION, samples RSS every 10 s, and
# prints min/avg/max RSS and average CPU in millicores.
#
#   scripts/footprint.sh [DURATION_SECONDS] [CONFIG]
#   (defaults: 600 s, examples/spire-agent.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
config=${2:-examples/spire-agent.yaml}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/medic" ./cmd/medic
# The peer serves the SPIRE agent page on :9988 (the example's scrape URL) and a TCP "server" on :8081.
"$work/medic" demo-peer --listen 127.0.0.1:9988 --server 127.0.0.1:8081 >"$work/peer.log" 2>&1 &
sleep 1
export MEDIC_STATE_DIR="$work/state" SPIRE_SERVER_ADDRESS=127.0.0.1:8081
"$work/medic" run --config "$config" >"$work/medic.log" 2>&1 &
pid=$!
sleep 2
kill -0 "$pid" || { cat "$work/medic.log"; exit 1; }

hz=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
# VmRSS, and its parts: RssAnon (heap, stacks: medic's private memory) and
# RssFile (clean pages of the binary's text/rodata mapped from the page
# cache: shared and reclaimable; how many are mapped depends on the page
# cache and the kernel's fault-around, not on medic's work).
rss() { awk '/^VmRSS/{v=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} END{print v, a, f}' "/proc/$pid/status"; }
# Skip the first 10 s (start-up), then measure.
sleep 10
c0=$(cpu); t0=$(date +%s.%N)
samples=()
end=$(( $(date +%s) + duration ))
while [ "$(date +%s)" -lt "$end" ]; do
  samples+=("$(rss)")
  sleep 10
done
c1=$(cpu); t1=$(date +%s.%N)
printf '%s\n' "${samples[@]}" | awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" '
  { r[NR]=$1; s+=$1; n++; if (min==""||$1<min) min=$1; if ($1>max) max=$1; if (n==1) first=$1; last=$1
    sa+=$2; if (amin==""||$2<amin) amin=$2; if ($2>amax) amax=$2; sf+=$3 }
  END {
    secs=t1-t0; mc=((c1-c0)/hz)/secs*1000
    printf "samples: %d over %.0f s\n", n, secs
    printf "RSS MiB: min %.1f avg %.1f max %.1f (first %.1f, last %.1f)\n", min/1024, s/n/1024, max/1024, first/1024, last/1024
    printf "  of which RssAnon (private) MiB: min %.1f avg %.1f max %.1f; RssFile (binary, page cache) avg %.1f\n", amin/1024, sa/n/1024, amax/1024, sf/n/1024
    printf "CPU: %.2f millicores average\n", mc
    printf "RSS MiB by minute:"; for (i=1;i<=n;i+=6) printf " %.1f", r[i]/1024; printf "\n"
  }'
