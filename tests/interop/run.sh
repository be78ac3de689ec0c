#!/usr/bin/env bash
# Interoperability with real clients: Python requests, PyJWT, pyotp, curl,
# and headless Chromium, against the demo on loopback; Python grpcio against
# the guarded gRPC example. Creates its own Python
# environment and installs Chromium when it is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/interop-venv"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import requests, jwt, pyotp, cryptography, grpc, grpc_tools' 2>/dev/null; then
  echo "== creating the Python client environment"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check requests 'pyjwt[crypto]' pyotp grpcio grpcio-tools
fi

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "== installing chromium"
  if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
    echo "chromium could not be installed; the browser check will say so and skip"
  fi
fi

# All features: the demo serves /metrics (feature metrics), and the build
# is the one `cargo test --all-features` made already.
cargo build --quiet --all-features --example demo --example verify_token --example grpc_guarded

cd "$here"
status=0
for script in inscada_requests.py pyjwt_interop.py pyotp_login.py nx_client.py browser_check.py prometheus_scrape.py grpc_client.py; do
  echo "== interop: $script"
  "$venv/bin/python" "$script" || status=1
done
echo "== interop: curl_flows.sh"
port="$("$venv/bin/python" -c 'import harness; print(harness.free_port())')"
metrics_port="$("$venv/bin/python" -c 'import harness; print(harness.free_port())')"
DEMO_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$metrics_port" LOGIN_THROTTLE_PER_MINUTE=0 "$target/debug/examples/demo" > /dev/null 2>&1 &
demo_pid=$!
trap 'kill $demo_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.05
done
./curl_flows.sh "http://127.0.0.1:$port" || status=1
exit $status
