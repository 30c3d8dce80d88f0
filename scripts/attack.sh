#!/usr/bin/env bash
# Attacks on a gateway on 127.0.0.1, and what it held: a slowloris, a
# WebSocket frame flood before `connect`, a WebSocket handshake flood, and
# hostile agents (the faults fixture, when built: a huge tool-call index,
# tool-report spam, pinned outbound responses) plus a run-board flood. Each is
# bounded in sockets and seconds (scripts/attack.py --help).
#
#   scripts/attack.sh                      # build the release binary, run all three
#   WASMCLAW_BIN=target/debug/wasmclaw scripts/attack.sh --only slowloris
#   WASMCLAW_BIN=target/debug/wasmclaw scripts/attack.sh --only tool-index --only run-board
#   ATTACK_MAX_CONNECTIONS=default scripts/attack.sh --sockets 3000
#   scripts/attack.sh --postgres --only pg-login-flood   # the gateway on a throwaway PostgreSQL
#
# Extra arguments go to scripts/attack.py. The gateway gets a temp state dir
# and `gateway.http.maxConnections: $ATTACK_MAX_CONNECTIONS` (default 1000, so
# that 1500 sockets reach the caps without opening ~16k sockets on a shared
# machine; `default` leaves the gateway's own fd-sized default in place).
# `--postgres` starts a throwaway PostgreSQL (initdb into a temp dir, as the
# `postgres` user when run as root, like tests/all/pg.rs) and puts the gateway
# on it, with a lock-out that counts loopback failures (windowMs 5000); without
# initdb the PostgreSQL scenario says it was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

POSTGRES=""
ARGS=()
for arg in "$@"; do
  if [ "$arg" = --postgres ]; then POSTGRES=1; else ARGS+=("$arg"); fi
done

BIN=${WASMCLAW_BIN:-target/release/wasmclaw}
if [ -z "${WASMCLAW_BIN:-}" ]; then
  cargo build --release --quiet -p wasmclaw --bin wasmclaw
fi
# The attacker needs as many sockets as it opens.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

MAX=${ATTACK_MAX_CONNECTIONS:-1000}
# The chat endpoint serves the stored-session turns of the PostgreSQL scenario.
HTTP="http: { endpoints: { chatCompletions: { enabled: true } } },"
if [ "$MAX" != default ]; then
  HTTP="http: { maxConnections: $MAX, endpoints: { chatCompletions: { enabled: true } } },"
fi
# The hostile agents are the faults fixture, built with the host (host/build.rs).
FAULTS=${WASMCLAW_FIXTURE_FAULTS:-target/guests/wasm32-wasip2/guest/wasmclaw_fixture_faults.wasm}
HOSTILE=""
HOSTILE_ARGS=()
if [ -f "$FAULTS" ]; then
  FAULTS=$(realpath "$FAULTS")
  PIN_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  HOSTILE="
    \"tool-index\": { plugin: \"$FAULTS\", config: { fault: \"tool-index\" } },
    \"tool-spam\": { plugin: \"$FAULTS\", config: { fault: \"tool-spam\", count: \"300\", kib: \"1024\" },
                   limits: { maxOutputBytes: 67108864, memoryBytes: 134217728, timeoutMs: 120000 } },
    \"http-pin\": { plugin: \"$FAULTS\", config: { fault: \"http-pin\" }, limits: { timeoutMs: 120000 },
                  http: { allow: [\"http://127.0.0.1:$PIN_PORT\"] } },
    large: { plugin: \"$FAULTS\", config: { fault: \"large\", bytes: \"1900000\" }, limits: { maxOutputBytes: 4194304 } },"
  HOSTILE_ARGS=(--hostile --pin-port "$PIN_PORT")
else
  echo "no faults fixture at $FAULTS (build the host once): hostile-agent scenarios skipped" >&2
fi
TOKEN="attack-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
STATE=$(mktemp -d)
GATEWAY_PID=""
PG_DIR=""
cleanup() {
  if [ -n "$GATEWAY_PID" ]; then
    kill "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  if [ -n "$PG_DIR" ]; then
    as_pg "$PG_BIN/pg_ctl" stop -w -m immediate -D "$PG_DIR/data" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
  rm -rf "$STATE"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: then its commands run as `postgres`.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

AUTH=""
DATABASE_URL=""
if [ -n "$POSTGRES" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "--postgres: no initdb (install the Debian package postgresql); the PostgreSQL scenario will be skipped"
  else
    PG_DIR=$(mktemp -d)
    PG_PASSWORD="attack-pg-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "$PG_PASSWORD" >"$PG_DIR/pw"
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$PG_DIR"; fi
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U wasmclaw -A scram-sha-256 --pwfile="$PG_DIR/pw" --no-sync >/dev/null
    PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\nmax_connections = 100\n" \
      "$PG_PORT" | as_pg tee -a "$PG_DIR/data/postgresql.auto.conf" >/dev/null
    as_pg "$PG_BIN/pg_ctl" start -w -t 60 -D "$PG_DIR/data" -l "$PG_DIR/server.log" >/dev/null
    DATABASE_URL="postgres://wasmclaw:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
    AUTH="auth: { rateLimit: { maxAttempts: 100000, windowMs: 5000, exemptLoopback: false } },"
    ARGS+=(--database-url "$DATABASE_URL" --flood-window 5)
    echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (throwaway)"
  fi
fi

cat >"$STATE/gateway.json5" <<EOF
{ gateway: { bind: "127.0.0.1", $HTTP $AUTH }, agents: { entries: { main: { plugin: "echo" }, $HOSTILE } } }
EOF
# Created here: the gateway's shell opens it only once scheduled, and the
# loop below must not read a file that is not there yet (set -e would end us).
: >"$STATE/stdout"
WASMCLAW_STATE_DIR="$STATE" OPENCLAW_GATEWAY_TOKEN="$TOKEN" WASMCLAW_LOG=info WASMCLAW_DATABASE_URL="$DATABASE_URL" \
  "$BIN" gateway --port 0 --config "$STATE/gateway.json5" >"$STATE/stdout" 2>"$STATE/gateway.log" &
GATEWAY_PID=$!

PORT=""
for _ in $(seq 1 600); do
  PORT=$(sed -n 's|^wasmclaw listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$STATE/stdout")
  [ -n "$PORT" ] && break
  kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$STATE/gateway.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$PORT" ] || { echo "the gateway did not start listening" >&2; cat "$STATE/gateway.log" >&2; exit 1; }

echo "gateway $("$BIN" --version 2>/dev/null || echo "$BIN") on 127.0.0.1:$PORT, pid $GATEWAY_PID"
echo "fd limit of the gateway: $(awk '/Max open files/ {print $4 " soft, " $5 " hard"}' "/proc/$GATEWAY_PID/limits")"
grep -o 'connection limits.*' "$STATE/gateway.log" | sed 's/\x1b\[[0-9;]*m//g' || true

python3 scripts/attack.py --port "$PORT" --pid "$GATEWAY_PID" --token "$TOKEN" ${HOSTILE_ARGS[@]+"${HOSTILE_ARGS[@]}"} ${ARGS[@]+"${ARGS[@]}"}

echo
if kill -0 "$GATEWAY_PID" 2>/dev/null; then
  echo "gateway still running after the attacks"
else
  echo "GATEWAY DIED during the attacks"
fi
echo "gateway log: $(grep -c ' WARN ' "$STATE/gateway.log" || true) warnings, $(grep -c ' ERROR ' "$STATE/gateway.log" || true) errors; the warnings:"
grep ' WARN ' "$STATE/gateway.log" | sed 's/^[^ ]* *//' | cut -c1-220 | sort | uniq -c | sort -rn | head -12 || true
