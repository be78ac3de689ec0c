#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) and prints
# the executions and findings. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# on a stable toolchain RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags.
# Usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
status=0
for target in token_sources verifier forwarded_for space_header login_bodies; do
  log="$(mktemp)"
  if cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 > "$log" 2>&1; then
    verdict="no findings"
  else
    verdict="FINDING (see artifacts/$target)"
    status=1
  fi
  execs="$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo '?')"
  echo "$target: $execs executions in ${seconds}s, $verdict"
  rm -f "$log"
done
exit $status
