#!/usr/bin/env bash
# The console's real-browser suite (tests/browser): pytest + Playwright driving the system's
# Chromium (/usr/bin/chromium, or $CHROMIUM) against real `consul-rs agent -dev` processes.
# Never downloads a browser. CONSUL_RS_BIN names the binary (default target/debug/consul-rs).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=".venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
export CONSUL_RS_BIN="${CONSUL_RS_BIN:-$PWD/target/debug/consul-rs}"
exec "$venv/bin/python" -m pytest -q tests/browser "$@"
