#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time (default 60 s each).
# Not part of CI's default path: it needs nightly and builds with sanitizers.
#   scripts/fuzz.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(chat_request config ws_frame)
# The host's build script compiles the wasm guests with this same toolchain.
rustup toolchain install nightly --profile minimal --target wasm32-wasip2 >/dev/null
rustup target add --toolchain nightly wasm32-wasip2 >/dev/null
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds}s"
  # Crashes land in fuzz/artifacts/$t; the corpus grows in fuzz/corpus/$t.
  cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=4096
done
