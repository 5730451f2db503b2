#!/usr/bin/env bash
# Installs what rolegate's tests need on a Debian 12 machine, and nothing that is already
# there. Safe to run again. Needs root (or sudo) for apt.
set -euo pipefail

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "testbed: installing ${need_apt[*]} (apt)"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
echo "testbed: redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') ready"

# The real OpenID Provider for the OIDC tests (npm oidc-provider), from its lock file.
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "testbed: installing nodejs and npm (apt)"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -d "$here/op/node_modules/oidc-provider" ]; then
  echo "testbed: npm ci in tests/testbed/op"
  (cd "$here/op" && npm ci --no-audit --no-fund --silent)
fi
echo "testbed: node $(node --version), oidc-provider ready"

# Headless Chromium from Debian, driven by playwright-core (which downloads no browser).
if ! command -v chromium >/dev/null 2>&1; then
  echo "testbed: installing chromium (apt)"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi
if [ ! -d "$here/browser/node_modules/playwright-core" ]; then
  echo "testbed: npm ci in tests/testbed/browser"
  (cd "$here/browser" && npm ci --no-audit --no-fund --silent)
fi
echo "testbed: $(chromium --version 2>/dev/null | head -1) ready"

# The STS emulator (moto server) and the real AWS CLI, in a venv of their own.
venv="$here/.venv"
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/aws" ]; then
  echo "testbed: pip install moto[server] awscli into tests/testbed/.venv (about 2 minutes)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/python/requirements.txt"
fi
echo "testbed: $("$venv/bin/aws" --version 2>&1 | cut -d' ' -f1), moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') ready"
