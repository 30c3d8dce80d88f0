#!/usr/bin/env bash
# Every benchmark in one go: installs wrk if missing (Debian/Ubuntu), runs the
# criterion microbenchmark, then the harness in release (scenarios: echo,
# assistant, streams, swap, soak, ws-idle), which folds criterion's figures in. Extra arguments go to the harness, e.g.
#   scripts/bench.sh --cell-seconds 3 --seconds 20
# Figures: the printed tables, target/bench/results.json and target/criterion/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if command -v apt-get >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
  else
    echo "install wrk (https://github.com/wg/wrk) for the throughput scenario" >&2
  fi
fi
# 10k open streams need that many sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo bench -p wasmclaw-bench --bench instantiate -- --warm-up-time 1 --measurement-time 5
cargo run --release -p wasmclaw-bench -- "$@"
