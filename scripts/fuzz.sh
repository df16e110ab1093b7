#!/usr/bin/env bash
# scripts/fuzz.sh [DURATION [TARGET...]]: runs every fuzz target in the
# repository (each `func FuzzXxx` in a _test.go file), or only the TARGETs
# named, for DURATION each (default 10s; any `go test -fuzztime` value: 30s,
# 5m, 100000x), one after the other, and prints the executions per target
# and in total. A crasher is left by go test in the package's
# testdata/fuzz/FuzzXxx/ (commit it: it becomes a regression seed every
# `go test` runs) and fails the script.
#
# FUZZ_PARALLEL bounds the workers (default GOMAXPROCS). FUZZ_MINIMIZE_TIME
# sets -fuzzminimizetime: 0s turns off minimising, which in a long campaign
# stalls the coordinator for long stretches on every new interesting input
# (a crasher is then written unminimised). The executions counted are new
# inputs run; the first seconds of each target replay its corpus
# (testdata/fuzz plus GOCACHE's) and are not counted, so a very short
# DURATION can report 0.
set -uo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"
shift || true
only=" $* "
fail=0
total=0
summary=()
# package dir + target name for every fuzz target.
while IFS=: read -r file name; do
  dir="./$(dirname "$file")"
  if [ "$only" != "  " ] && [[ "$only" != *" $name "* ]]; then continue; fi
  echo "=== $name ($dir) for $duration"
  log=$(mktemp)
  # -parallel bounds the workers (default: GOMAXPROCS).
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" ${FUZZ_PARALLEL:+-parallel "$FUZZ_PARALLEL"} ${FUZZ_MINIMIZE_TIME:+-fuzzminimizetime "$FUZZ_MINIMIZE_TIME"} "$dir" 2>&1 | tee "$log" | grep -E '^(fuzz: elapsed.*execs|--- FAIL|    |FAIL|ok|PASS)' | tail -n 4
  rc=${PIPESTATUS[0]}
  # The last progress line carries the cumulative count: "execs: 123456 (…/sec)".
  execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo 0)
  execs=${execs:-0}
  total=$((total + execs))
  if [ "$rc" -ne 0 ] && ! grep -q 'Failing input written' "$log" && grep -q 'context deadline exceeded' "$log"; then
    # Go's fuzzing coordinator can time out waiting for a slow worker when
    # -fuzztime ends (no input failed, nothing was written): say so, do not fail.
    summary+=("$(printf '%-28s %-36s %12s  (coordinator time-out at the end, no failing input)' "$name" "$dir" "$execs")")
  elif [ "$rc" -ne 0 ]; then
    fail=1
    summary+=("$(printf '%-28s %-36s %12s  FAILED (see testdata/fuzz/%s)' "$name" "$dir" "$execs" "$name")")
  else
    summary+=("$(printf '%-28s %-36s %12s' "$name" "$dir" "$execs")")
  fi
  rm -f "$log"
done < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sed 's/^\.\///; s/:func /:/' | sort)

echo
printf '%-28s %-36s %12s\n' target package executions
printf '%s\n' "${summary[@]}"
printf '%-28s %-36s %12s\n' total "" "$total"
exit $fail
