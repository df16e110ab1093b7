#!/usr/bin/env bash
# The fleet simulation (scripts/fleet-sim.sh, docs/fleet.md) at N=50: 50
# in-process medics beside SPIRE-like agents, a real Prometheus scraping
# them (the fleet-outage guard's source), the real kube-apiserver for the
# fleet limit's Leases. Each scenario prints its JSON line and fails on a
# violated outcome: no restart during a shared outage; a local fault is
# remediated within its bound; recovery restarts stay within the fleet max.
# About 1 min per scenario on 2 cores, plus one build.
set -euo pipefail
cd "$(dirname "$0")/../.."
apt_install prometheus
for scenario in shared-outage local-fault recovery; do
	bash scripts/fleet-sim.sh --sidecars 50 --scenario "$scenario" 2> >(grep -v '^=== ' >&2)
done
