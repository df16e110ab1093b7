#!/usr/bin/env bash
# fleet-sim.sh runs the fleet simulation (internal/fleetsim; docs/fleet.md):
# N in-process medic sidecars, each beside its own SPIRE-like agent, a real
# Prometheus scraping them (the fleet-outage guard's source) and the real
# kube-apiserver for the fleet limit's Leases and for Events. It prints one
# JSON line:
#   {"sidecars","scenario","restarts","restarts_during_outage","max_concurrent_restarts",
#    "suppressed_by_reason","time_to_first_decision_s","time_to_drain_s",
#    "apiserver_writes","prometheus_queries"}
# and exits non-zero when a required outcome is violated:
#   shared-outage  no restart anywhere while the upstream is down
#   local-fault    the one hung agent is restarted within its rule's bound, no other
#   recovery       after a shared outage with agents hung/in backoff: restarts never
#                  exceed the fleet max at any instant, every hung agent is restarted
# Progress and further figures (facts) go to stderr.
#
# Usage: scripts/fleet-sim.sh [--sidecars N] [--scenario shared-outage|local-fault|recovery]
#                             [--fleet-max M] [--scale S] [--no-guard]
# --no-guard is the control run: the same fleet without the fleet-outage
# requirement (its shared-outage outcome is expected to fail).
# Needs prometheus (apt-get install prometheus) and the control plane of
# scripts/kube-testenv.sh (built and cached on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

sidecars=50 scenario=shared-outage fleet_max=5 scale=0 extra=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--sidecars) sidecars=$2; shift 2 ;;
	--scenario) scenario=$2; shift 2 ;;
	--fleet-max) fleet_max=$2; shift 2 ;;
	--scale) scale=$2; shift 2 ;;
	--no-guard) extra+=(-no-guard); shift ;;
	-h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "fleet-sim.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
case "$scenario" in
shared-outage|local-fault|recovery) ;;
*) echo "fleet-sim.sh: --scenario must be shared-outage, local-fault or recovery" >&2; exit 2 ;;
esac
[[ $sidecars =~ ^[1-9][0-9]*$ ]] || { echo "fleet-sim.sh: --sidecars must be a positive number" >&2; exit 2; }

command -v prometheus >/dev/null || { echo "fleet-sim.sh: prometheus not installed (apt-get install prometheus)" >&2; exit 1; }
eval "$(bash scripts/kube-testenv.sh --print-env)"
export MEDIC_REQUIRE_KUBE=1

# File descriptors: per sidecar a few listeners and connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
go test -v -tags fleetsim -count=1 -timeout 90m -run '^TestFleetSim$' ./internal/fleetsim \
	-args -sidecars "$sidecars" -scenario "$scenario" -fleet-max "$fleet_max" -scale "$scale" -out "$out" "${extra[@]}" >&2 || status=$?
if [[ -s $out ]]; then
	cat "$out"
fi
exit $status
