#!/usr/bin/env bash
# rolegate's whole test suite. Installs what the tests need (see tests/testbed/install.sh),
# then runs every unit and integration test. The tests start their own servers
# (redis-server on free loopback ports) and stop them when they finish.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/testbed/install.sh
# Quiet the environment's RUST_BACKTRACE=1 so expected errors in child processes stay short.
export RUST_BACKTRACE=0
cargo test --locked --all-targets "$@"
