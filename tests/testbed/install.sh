#!/usr/bin/env bash
# Installs what rolegate's tests (and the local demo) need on a Debian 12 machine, and
# nothing that is already there. Safe to run again. Needs root (or sudo) for apt.
#
# usage: install.sh [build] [redis] [op] [browser] [python] [saml] [shells] [keyring] [scim] [bench]
#        (no argument: everything the tests need; bench: the load generator, wrk)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
want="${*:-build redis op browser python saml shells keyring scim}"
wants() { [[ " $want " == *" $1 "* ]]; }

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
apt_updated=""
apt_install() {
  echo "testbed: installing $* (apt)"
  if [ -z "$apt_updated" ]; then $sudo_cmd apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Building rolegate: samael binds libxmlsec1 through bindgen, which needs libclang.
if wants build; then
  need=()
  for pkg in libclang-dev libxmlsec1-dev libxml2-dev libssl-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
  done
  if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi
  echo "testbed: build dependencies (libclang, libxmlsec1) ready"
fi

if wants redis; then
  need=()
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
  # The load balancer in front of several broker instances (tests/it/scale.rs).
  command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
  if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi
  echo "testbed: redis-server $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') ready"
fi

if wants op || wants browser; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
fi

# The real OpenID Provider (npm oidc-provider), from its lock file.
if wants op; then
  if [ ! -d "$here/op/node_modules/oidc-provider" ]; then
    echo "testbed: npm ci in tests/testbed/op"
    (cd "$here/op" && npm ci --no-audit --no-fund --silent)
  fi
  echo "testbed: node $(node --version), oidc-provider ready"
fi

# Headless Chromium from Debian, driven by playwright-core (which downloads no browser).
if wants browser; then
  command -v chromium >/dev/null 2>&1 || apt_install chromium fonts-liberation
  if [ ! -d "$here/browser/node_modules/playwright-core" ]; then
    echo "testbed: npm ci in tests/testbed/browser"
    (cd "$here/browser" && npm ci --no-audit --no-fund --silent)
  fi
  echo "testbed: $(chromium --version 2>/dev/null | head -1) ready"
fi

# The STS emulator (moto server) and the real AWS CLI, in a venv of their own.
if wants python; then
  venv="$here/.venv"
  if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/aws" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_install python3-venv; fi
    echo "testbed: pip install moto[server] awscli into tests/testbed/.venv (about 2 minutes)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/python/requirements.txt"
  fi
  echo "testbed: $("$venv/bin/aws" --version 2>&1 | cut -d' ' -f1), moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') ready"
fi

# The real SAML IdP (Debian's SimpleSAMLphp under `php -S`) and the xmlsec1 command-line
# tool that signs the attack-suite fixtures with the tests' own key.
if wants saml; then
  need=()
  [ -d /usr/share/simplesamlphp/www ] || need+=(simplesamlphp)
  for pkg in php-cli php-xml php-mbstring php-curl xmlsec1 openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
  done
  if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi
  echo "testbed: simplesamlphp $(dpkg-query -W -f='${Version}' simplesamlphp), $(xmlsec1 --version | head -1) ready"
fi

# fish, to evaluate the fish form of the credentials the way a fish user pastes it (bash
# and dash are always there; PowerShell is not packaged by Debian, so its form is
# evaluated only where pwsh happens to be installed).
if wants shells; then
  command -v fish >/dev/null 2>&1 || apt_install fish
  echo "testbed: $(fish --version 2>&1) ready"
fi

# The SCIM compliance checker (scim2-tester), in its own venv (tests/it/scim.rs).
if wants scim; then
  venv="$here/.venv-scim"
  if [ ! -x "$venv/bin/scim2" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_install python3-venv; fi
    echo "testbed: pip install scim2-cli (scim2-tester) into tests/testbed/.venv-scim"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/python/scim-requirements.txt"
  fi
  echo "testbed: scim2-tester $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("scim2-tester"))') ready"
fi

# A Secret Service keyring without a desktop (the CLI's token store on Linux): the CLI
# tests start a private D-Bus session (dbus-run-session) with gnome-keyring in it, and
# read back what the CLI stored with secret-tool.
if wants keyring; then
  need=()
  command -v dbus-run-session >/dev/null 2>&1 || need+=(dbus-bin)
  command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
  command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
  command -v secret-tool >/dev/null 2>&1 || need+=(libsecret-tools)
  if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}"; fi
  echo "testbed: gnome-keyring $(dpkg-query -W -f='${Version}' gnome-keyring), secret-tool ready"
fi

# The HTTP load generator of the load benchmarks (benches/load/run.sh); not part of the
# test run (no argument installs the tests' components only).
if [[ " $* " == *" bench "* ]]; then
  command -v wrk >/dev/null 2>&1 || apt_install wrk
  echo "testbed: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2) ready"
fi
