#!/usr/bin/env bash
# One command for the broker's load benchmarks: installs what they need (wrk, xmlsec1,
# Redis, HAProxy, the test venv with moto), builds rolegate and the baselines binary
# (benches/baselines.rs) in release, and runs the scenarios. Everything listens on
# 127.0.0.1, runs for a bounded time, and is stopped at the end.
#
# usage: benches/load/run.sh [SCENARIO...] [-- bench.py options]
#        scenarios: table (every row of the performance table with its baseline),
#                   wave (this wave's rows: API and credentials-page issuance, role
#                   picker), exchange, scaleout; default: table
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/testbed/install.sh build python redis saml bench
cargo build --release --locked -q
ROLEGATE_BASELINES="$(cargo bench --locked -q --bench baselines --no-run --message-format=json \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "baselines" and m.get("executable"):
        print(m["executable"])')"
export ROLEGATE_BASELINES
scenarios=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do scenarios+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#scenarios[@]} -eq 0 ] && scenarios=(table)
for s in "${scenarios[@]}"; do
  tests/testbed/.venv/bin/python benches/load/bench.py "$s" "$@"
done
