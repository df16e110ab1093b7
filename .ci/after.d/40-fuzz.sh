#!/usr/bin/env bash
# Every fuzz target briefly (its seed corpus plus new inputs), so a change
# that breaks a target's invariant or reintroduces a committed crasher
# fails CI. Five targets at 10 s each plus their builds: about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/fuzz.sh 10s
