#!/usr/bin/env bash
# One command for the broker's load benchmarks: installs what they need (the test venv:
# moto and cryptography), builds rolegate in release, and runs the scenarios. Everything
# listens on 127.0.0.1, runs for a bounded time, and is stopped at the end.
#
# usage: benches/load/run.sh [SCENARIO...] [-- bench.py options]   (exchange, scaleout; default: exchange)
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/testbed/install.sh build python redis
cargo build --release --locked -q
scenarios=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do scenarios+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#scenarios[@]} -eq 0 ] && scenarios=(exchange)
for s in "${scenarios[@]}"; do
  tests/testbed/.venv/bin/python benches/load/bench.py "$s" "$@"
done
