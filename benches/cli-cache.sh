#!/usr/bin/env bash
# How long `rolegate credentials --format credential-process` takes when the credentials
# come from its cache (what the AWS CLI, Terraform and SDKs run before each call): the
# whole process, in the client build (release), next to the process-spawn floor
# (/bin/true) measured in the same run. Prints p50/p99 and the client binary's size.
#
# usage: benches/cli-cache.sh [RUNS]   (default 500; needs hyperfine, installed from apt)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-500}"

command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null || sudo apt-get install -y -qq hyperfine >/dev/null; }
target="${CARGO_TARGET_DIR:-target/client-release}"
CARGO_TARGET_DIR="$target" cargo build --release --locked --no-default-features --features cli -q
bin="$target/release/rolegate"

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/cache"
expires="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)"
printf '{"Version":1,"AccessKeyId":"ASIAEXAMPLEEXAMPLE01","SecretAccessKey":"%s","SessionToken":"%s","Expiration":"%s","Region":"us-east-1"}' \
  "$(head -c 30 /dev/urandom | base64)" "$(head -c 600 /dev/urandom | base64 -w0)" "$expires" > "$dir/cache/prod-admin.json"

export ROLEGATE_CONFIG_DIR="$dir"
hyperfine --style none -N --warmup 20 --runs "$runs" --export-json "$dir/out.json" \
  "$bin credentials --role prod-admin --format credential-process" "/bin/true" >/dev/null
python3 - "$dir/out.json" "$bin" <<'PY'
import json, os, sys
data = json.load(open(sys.argv[1]))
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
for r in data["results"]:
    t = [x * 1000 for x in r["times"]]
    print(f"{r['command'][:60]:<60} runs {len(t):>4}  p50 {pct(t,50):6.2f} ms  p99 {pct(t,99):6.2f} ms")
print(f"client binary: {os.path.getsize(sys.argv[2]) / 1e6:.1f} MB ({sys.argv[2]})")
print("load average:", open('/proc/loadavg').read().split()[:3])
PY
