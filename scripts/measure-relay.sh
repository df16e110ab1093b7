#!/usr/bin/env bash
# Measures the grpcStream probe against the relay test peer running as a
# real child process (killed with SIGKILL/SIGTERM, stopped with SIGSTOP):
#   - relay process killed  -> medic_stream_up 0 committed
#   - relay hung (SIGSTOP)  -> detected by keepalive (10s/2s and the 15s/5s defaults)
#   - relay back            -> stream restored, relative to the dial the backoff scheduled
#   - 100 streams in one medic: RSS and CPU per stream
# Takes about 90 s. Prints the MEASURE lines.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
MEDIC_MEASURE=1 go test -count=1 -timeout 15m -v -run 'TestMeasure' ./supervisor/probe/grpcstream/ >"$out" 2>&1 || { cat "$out"; exit 1; }
grep -E 'MEASURE' "$out" | sed -E 's/^ *[a-z_]+\.go:[0-9]+: MEASURE /  /'
