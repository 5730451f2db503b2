#!/usr/bin/env bash
# A complete local rolegate demo on one machine, all on 127.0.0.1:
#   the broker (config/dev.toml, in-memory store)            http://127.0.0.1:8080
#   a real OpenID Provider with test users (npm oidc-provider) http://127.0.0.1:9000
#   the STS emulator (moto server)                            http://127.0.0.1:5000
#   a fake AWS federation endpoint + console                  http://127.0.0.1:5100
# Installs what it needs on first run (tests/testbed/install.sh: npm and pip packages).
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
run="$root/.demo"
mkdir -p "$run"

for port in 8080 9000 5000 5100; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "local-demo: port $port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done

tests/testbed/install.sh build op python
echo "local-demo: building rolegate"
cargo build --quiet --bin rolegate

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "local-demo: stopping"
  for pid in "${pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

venv="$root/tests/testbed/.venv"
"$venv/bin/moto_server" -H 127.0.0.1 -p 5000 >"$run/moto.log" 2>&1 &
pids+=($!)
FEDERATION_PORT=5100 STS_ENDPOINT=http://127.0.0.1:5000 \
  "$venv/bin/python" tests/testbed/federation/fake_federation.py >"$run/federation.log" 2>&1 &
pids+=($!)
(cd tests/testbed/op && exec env OP_PORT=9000 OP_REDIRECTS=http://127.0.0.1:8080/oidc/corp/callback \
  OP_JWKS_FILE="$run/op-jwks.json" node server.mjs) >"$run/op.log" 2>&1 &
pids+=($!)

wait_for() {
  local what=$1 url=$2
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "$url"; then return 0; fi
    sleep 0.1
  done
  echo "local-demo: $what did not come up (see $run/*.log)" >&2
  exit 1
}
wait_for "moto" http://127.0.0.1:5000/moto-api/
wait_for "the fake federation endpoint" http://127.0.0.1:5100/healthz
wait_for "the OpenID Provider" http://127.0.0.1:9000/.well-known/openid-configuration

# The broker's own AWS credentials: the emulator accepts any.
AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true \
  target/debug/rolegate serve --config config/dev.toml 2>"$run/rolegate.log" &
pids+=($!)
wait_for "rolegate" http://127.0.0.1:8080/healthz

cat <<BANNER

  rolegate demo is running.

    Open    http://127.0.0.1:8080/
    Sign in alice / alice-pw   (admin: production and development roles)
            bob / bob-pw       (developer)   carol / carol-pw (no roles)   carl / carl-pw (contractor)

    Then pick a role: "Console" lands on a fake AWS console; "CLI credentials" shows
    credentials the AWS CLI accepts against the emulator, e.g.
      tests/testbed/.venv/bin/aws sts get-caller-identity --endpoint-url http://127.0.0.1:5000

    Logs: $run/rolegate.log   Audit: $run/audit.jsonl
    Try:  target/debug/rolegate explain --config config/dev.toml --idp corp --claims config/examples/contractor.claims.json

  Ctrl-C stops everything.
BANNER
wait "${pids[@]}"
