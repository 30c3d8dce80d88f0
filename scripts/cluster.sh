#!/usr/bin/env bash
# A wasmclaw cluster on loopback, for trying cluster mode and for the benchmark:
# a fresh PostgreSQL, N gateways sharing it (same token, same database URL, a
# state dir and a port each) and HAProxy in front of them, health-checking /ready.
#
#   scripts/cluster.sh [up] [OPTIONS]     start it all, print the URL and token, return
#   scripts/cluster.sh run [OPTIONS]      the same, then stay in the foreground; Ctrl-C stops it all
#   scripts/cluster.sh status [--dir D]   what runs, and each gateway's /ready
#   scripts/cluster.sh down [--dir D]     stop what `up` started (gateways drain first), delete the data
#
# Parts, for the benchmark (bench/src/cluster.rs) or a cluster of your own making:
#   scripts/cluster.sh postgres [OPTIONS]          only PostgreSQL (writes WASMCLAW_DATABASE_URL)
#   scripts/cluster.sh haproxy [OPTIONS] ADDR...   only HAProxy, in front of gateways at HOST:PORT
#   Both record what they started in --dir; `down --dir` stops it.
#
# Options:
#   -n, --instances N   gateways (default 3)
#   --port P            HAProxy's port (default 18790; 0 = any free port)
#   --pg-port P         PostgreSQL's port (default 55432; 0 = any free port)
#   --dir D             state, logs and pid files (default target/cluster)
#   --release           build and run the release binary (default: debug)
#   --bin PATH          run this wasmclaw binary; build nothing
#
# Environment: OPENCLAW_GATEWAY_TOKEN (default: a random token), WASMCLAW_LOG
# (gateways' log filter, default info), PG_BINDIR (where initdb and pg_ctl are;
# default: the newest /usr/lib/postgresql/*/bin, else PATH), CARGO_TARGET_DIR.
#
# Needs: PostgreSQL server binaries, psql, HAProxy, curl, ss
# (Debian: apt-get install postgresql haproxy curl iproute2). As root, PostgreSQL
# runs as the `postgres` user (runuser), since it refuses to run as root.
# Everything listens on 127.0.0.1 only. The database is new on every `up` and is
# deleted by `down`; logs stay in --dir until the next `up`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATE="$ROOT/scripts/cluster/haproxy.cfg.in"
BIND=127.0.0.1

CMD=up
case "${1:-}" in
  up | run | down | status | postgres | haproxy) CMD=$1; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

INSTANCES=3
HAPROXY_PORT=18790
PG_PORT=55432
DIR="$ROOT/target/cluster"
PROFILE=debug
BIN=""
BACKENDS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n | --instances) INSTANCES=${2:?--instances needs a number}; shift 2 ;;
    --port) HAPROXY_PORT=${2:?--port needs a port}; shift 2 ;;
    --pg-port) PG_PORT=${2:?--pg-port needs a port}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a folder}; shift 2 ;;
    --release) PROFILE=release; shift ;;
    --bin) BIN=${2:?--bin needs a path}; shift 2 ;;
    -h | --help) exec "$0" --help ;;
    -*) echo "cluster.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
      [ "$CMD" = haproxy ] || { echo "cluster.sh: unexpected argument $1 (see --help)" >&2; exit 2; }
      BACKENDS+=("$1"); shift ;;
  esac
done
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}
say() { echo "cluster.sh: $*" >&2; }

is_number() { [[ "$1" =~ ^[0-9]+$ ]]; }
if ! is_number "$INSTANCES" || [ "$INSTANCES" -lt 1 ]; then
  die "--instances must be a number ≥ 1, not '$INSTANCES'"
fi
is_number "$HAPROXY_PORT" || die "--port must be a number, not '$HAPROXY_PORT'"
is_number "$PG_PORT" || die "--pg-port must be a number, not '$PG_PORT'"

# ---------------------------------------------------------------- helpers

need() {
  command -v "$1" >/dev/null || die "$1 not found; $2"
}

port_in_use() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# A port nobody listens on (small race with other programs; fine on loopback).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    port_in_use "$p" || { echo "$p"; return; }
  done
  die "found no free port"
}

# `want_port NAME PORT`: PORT, or a free one for 0; fails if PORT is taken.
want_port() {
  if [ "$2" = 0 ]; then
    free_port
  elif port_in_use "$2"; then
    die "port $2 ($1) is already in use on this machine: stop that program or pick another (--port, --pg-port, or 0 for any)"
  else
    echo "$2"
  fi
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# The pid in a pid file, if that process is still the one we started
# (its command line contains $2), so a recycled pid is never signalled.
live_pid() {
  local file=$1 name=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  is_number "$pid" && running "$pid" || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$name" || return 1
  echo "$pid"
}

# Whether a process runs: exited ones may stay zombies for a while when a
# previous invocation of this script started them and init reaps them late.
running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
}

# `stop_pid FILE NAME SECONDS`: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid
  pid=$(live_pid "$1" "$2") || { rm -f "$1"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $(($3 * 10))); do
    running "$pid" || break
    sleep 0.1
  done
  if running "$pid"; then
    say "$(basename "$1" .pid) (pid $pid) did not stop within $3 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

# Run as the postgres user when we are root (PostgreSQL refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    echo "$PG_BINDIR"
    return
  fi
  local newest
  newest=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$newest" ]; then
    echo "$newest"
  elif command -v initdb >/dev/null; then
    dirname "$(command -v initdb)"
  else
    die "PostgreSQL server binaries (initdb, pg_ctl) not found; Debian: apt-get install postgresql (or set PG_BINDIR)"
  fi
}

# KEY=value lines for scripts and the benchmark; contains secrets, so 0600.
env_set() {
  local file="$DIR/cluster.env"
  (
    umask 077
    { grep -v "^$1=" "$file" 2>/dev/null || true; echo "$1=$2"; } >"$file.tmp"
  )
  mv "$file.tmp" "$file"
}
env_get() {
  sed -n "s/^$1=//p" "$DIR/cluster.env" 2>/dev/null | tail -n 1
}

anything_running() {
  local f
  live_pid "$DIR/haproxy.pid" "$DIR/haproxy.cfg" >/dev/null && return 0
  for f in "$DIR"/gw*.pid; do
    [ -e "$f" ] && live_pid "$f" "$DIR/gateway.json5" >/dev/null && return 0
  done
  [ -f "$DIR/pgdata.path" ] && [ -f "$(cat "$DIR/pgdata.path")/postmaster.pid" ] && return 0
  return 1
}

# ---------------------------------------------------------------- down

stop_all() {
  local f grace=15 pgdata
  # Gateways first: each stops accepting, answers /ready 503 and finishes its
  # runs within gateway.shutdownGraceMs (10 s here) while HAProxy still routes.
  for f in "$DIR"/gw*.pid; do
    [ -e "$f" ] || continue
    local pid
    if pid=$(live_pid "$f" "$DIR/gateway.json5"); then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for f in "$DIR"/gw*.pid; do
    [ -e "$f" ] && stop_pid "$f" "$DIR/gateway.json5" "$grace"
  done
  stop_pid "$DIR/haproxy.pid" "$DIR/haproxy.cfg" 5
  if [ -f "$DIR/pgdata.path" ]; then
    pgdata=$(cat "$DIR/pgdata.path")
    if [ -f "$pgdata/postmaster.pid" ]; then
      as_pg "$(pg_bindir)/pg_ctl" -D "$pgdata" -m fast -w -t 30 stop >/dev/null ||
        say "pg_ctl stop failed for $pgdata; see $DIR/postgres.log"
    fi
    case "$pgdata" in
      "$DIR"/* | /tmp/wasmclaw-pg.*) rm -rf "$pgdata" ;;
    esac
    rm -f "$DIR/pgdata.path"
  fi
  rm -rf "$DIR"/gw*/ "$DIR/cluster.env"
}

# ---------------------------------------------------------------- postgres

start_postgres() {
  need psql "Debian: apt-get install postgresql"
  local bindir pgdata user pw su_pw url
  bindir=$(pg_bindir)
  if [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
    die "no initdb/pg_ctl in $bindir (set PG_BINDIR)"
  fi
  PG_PORT=$(want_port PostgreSQL "$PG_PORT")
  pgdata="$DIR/pgdata"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user to run PostgreSQL as (the Debian package creates it)"
    # The postgres user must reach the data folder; under /root it cannot.
    if ! runuser -u postgres -- test -x "$DIR"; then
      pgdata=$(mktemp -d /tmp/wasmclaw-pg.XXXXXX)
    fi
  fi
  rm -rf "$pgdata" && mkdir -p "$pgdata"
  echo "$pgdata" >"$DIR/pgdata.path"
  [ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
  chmod 700 "$pgdata"
  user=wasmclaw
  pw=$(random_hex 16)
  su_pw=$(random_hex 16)
  # Passwords on TCP (scram), no Unix socket: nothing but 127.0.0.1:PORT.
  local pwfile="$pgdata.pw"
  (umask 077 && echo "$su_pw" >"$pwfile")
  [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
  if ! as_pg "$bindir/initdb" -D "$pgdata" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    cat "$DIR/initdb.log" >&2
    die "initdb failed (log above, $DIR/initdb.log)"
  fi
  rm -f "$pwfile"
  touch "$DIR/postgres.log"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/postgres.log"
  if ! as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$DIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=$BIND -c port=$PG_PORT -c unix_socket_directories='' -c max_connections=300" \
    start >/dev/null; then
    tail -n 20 "$DIR/postgres.log" >&2
    die "PostgreSQL did not start (log above, $DIR/postgres.log)"
  fi
  PGPASSWORD=$su_pw psql -q -v ON_ERROR_STOP=1 -h "$BIND" -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE $user LOGIN PASSWORD '$pw'" -c "CREATE DATABASE wasmclaw OWNER $user" >/dev/null ||
    die "creating the wasmclaw role and database failed"
  url="postgres://$user:$pw@$BIND:$PG_PORT/wasmclaw"
  env_set WASMCLAW_DATABASE_URL "$url"
  env_set PG_PORT "$PG_PORT"
  say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on $BIND:$PG_PORT, database wasmclaw (data $pgdata)"
}

# ---------------------------------------------------------------- gateways

build_binary() {
  if [ -n "$BIN" ]; then
    [ -x "$BIN" ] || die "--bin $BIN is not an executable file"
    return
  fi
  need cargo "install Rust with rustup (https://rustup.rs); rust-toolchain.toml pins the version"
  local flags=()
  [ "$PROFILE" = release ] && flags=(--release)
  say "building wasmclaw ($PROFILE)…"
  (cd "$ROOT" && cargo build "${flags[@]}" --quiet -p wasmclaw --bin wasmclaw) ||
    die "cargo build failed (output above)"
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/wasmclaw"
}

write_config() {
  # The database URL and the token come from the environment, as they would
  # from a Kubernetes Secret; this file holds no secret.
  cat >"$DIR/gateway.json5" <<'EOF'
// Written by scripts/cluster.sh. Shared by every gateway of the cluster; each
// gets WASMCLAW_STATE_DIR, OPENCLAW_GATEWAY_TOKEN and WASMCLAW_DATABASE_URL.
{
  gateway: {
    bind: "127.0.0.1",
    auth: { mode: "token" },
    http: {
      endpoints: { chatCompletions: { enabled: true } },
      // Behind HAProxy every client has HAProxy's address.
      maxConnectionsPerClient: 65536,
      // HAProxy drops its idle connections to a gateway within seconds; a gateway
      // closing one first could cut a request HAProxy just sent on it.
      headerReadTimeoutMs: 65000,
      idleTimeoutMs: 60000,
    },
    shutdownGraceMs: 10000,
  },
  agents: { entries: { main: { plugin: "echo" } } },
}
EOF
}

# `launch_gateway I`: gateway I on a free port, in the background.
launch_gateway() {
  local i=$1 port state
  port=$(free_port)
  # Not one already given to another part of this cluster that is still starting.
  while grep -q "[:=]$port\$" "$DIR/cluster.env" 2>/dev/null; do port=$(free_port); done
  state="$DIR/gw$i"
  rm -rf "$state" && mkdir -p "$state"
  : >"$DIR/gw$i.out"
  env_set "GATEWAY_$i" "http://$BIND:$port"
  # setsid: its own session, so a Ctrl-C in this terminal reaches only this
  # script, which then stops the gateways in order.
  WASMCLAW_STATE_DIR="$state" OPENCLAW_GATEWAY_TOKEN="$TOKEN" \
    WASMCLAW_DATABASE_URL="$(env_get WASMCLAW_DATABASE_URL)" WASMCLAW_LOG="${WASMCLAW_LOG:-info}" \
    setsid "$BIN" gateway --port "$port" --config "$DIR/gateway.json5" \
    >"$DIR/gw$i.out" 2>"$DIR/gw$i.log" </dev/null &
  echo "$!" >"$DIR/gw$i.pid"
}

# `await_gateway I`: until gateway I answers /ready with 200; fails if it exits.
await_gateway() {
  local i=$1 pid url
  pid=$(cat "$DIR/gw$i.pid")
  url=$(env_get "GATEWAY_$i")
  for _ in $(seq 1 1200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$DIR/gw$i.log" >&2
      die "gateway $i exited during start-up (log above, $DIR/gw$i.log)"
    fi
    if grep -q "listening on" "$DIR/gw$i.out" &&
      [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/ready")" = 200 ]; then
      say "gateway $i: $url (pid $pid, state $DIR/gw$i)"
      return
    fi
    sleep 0.1
  done
  tail -n 30 "$DIR/gw$i.log" >&2
  die "gateway $i did not answer /ready with 200 within 120 s (log above, $DIR/gw$i.log)"
}

# ---------------------------------------------------------------- haproxy

# `start_haproxy HOST:PORT...`
start_haproxy() {
  need haproxy "Debian: apt-get install haproxy"
  [ -f "$TEMPLATE" ] || die "missing $TEMPLATE"
  [ $# -ge 1 ] || die "haproxy needs at least one gateway address (HOST:PORT)"
  local port stats pid i=0 addr
  port=$(want_port HAProxy "$HAPROXY_PORT")
  stats=$(free_port)
  sed -e "s/@BIND@/$BIND/g" -e "s/@PORT@/$port/g" -e "s/@STATS_PORT@/$stats/g" "$TEMPLATE" >"$DIR/haproxy.cfg"
  for addr in "$@"; do
    [[ "$addr" =~ ^[^:/]+:[0-9]+$ ]] || die "'$addr' is not HOST:PORT"
  done
  for addr in "$@"; do
    i=$((i + 1))
    echo "    server gw$i $addr" >>"$DIR/haproxy.cfg"
  done
  # The same gateways unchecked, used only when every checked one is down (the
  # template says why).
  i=0
  for addr in "$@"; do
    i=$((i + 1))
    echo "    server gw$i-open $addr backup no-check" >>"$DIR/haproxy.cfg"
  done
  haproxy -c -q -f "$DIR/haproxy.cfg" || die "haproxy rejected $DIR/haproxy.cfg (message above)"
  # maxconn needs two descriptors per connection.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  setsid haproxy -db -f "$DIR/haproxy.cfg" >"$DIR/haproxy.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$DIR/haproxy.pid"
  # Up once it forwards /ready to a healthy gateway.
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$DIR/haproxy.log" >&2; die "haproxy exited (log above)"; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$BIND:$port/ready")" = 200 ]; then
      env_set WASMCLAW_URL "http://$BIND:$port"
      env_set HAPROXY_STATS "http://$BIND:$stats/"
      say "HAProxy $(haproxy -v | awk 'NR==1 {print $3}') on $BIND:$port in front of $# gateway(s) (stats http://$BIND:$stats/)"
      return
    fi
    sleep 0.1
  done
  cat "$DIR/haproxy.log" >&2
  die "HAProxy on $BIND:$port did not answer /ready with 200 within 10 s"
}

# ---------------------------------------------------------------- commands

# While starting: any failure, Ctrl-C or kill stops whatever was started.
STARTING=0
on_exit() {
  local rc=$?
  if [ "$STARTING" = 1 ]; then
    say "start-up did not complete; stopping what was started"
    stop_all
  fi
  exit "$rc"
}
interrupted() {
  say "interrupted"
  exit 130
}

begin_start() {
  need curl "Debian: apt-get install curl"
  need ss "Debian: apt-get install iproute2"
  need setsid "Debian: apt-get install util-linux"
  if anything_running; then
    die "a cluster started from $DIR is still running: scripts/cluster.sh down --dir $DIR"
  fi
  stop_all # leftovers of a crashed run
  rm -f "$DIR"/*.log "$DIR"/*.out
  STARTING=1
  trap on_exit EXIT
  trap interrupted INT TERM HUP
}

print_summary() {
  local url token
  url=$(env_get WASMCLAW_URL)
  token=$(env_get OPENCLAW_GATEWAY_TOKEN)
  cat <<EOF

wasmclaw cluster: $INSTANCES gateway(s) on PostgreSQL behind HAProxy

  URL:       $url
  token:     $token
  database:  $(env_get WASMCLAW_DATABASE_URL | sed 's|//\([^:]*\):[^@]*@|//\1:***@|')
  gateways:  $(for i in $(seq 1 "$INSTANCES"); do printf '%s ' "$(env_get "GATEWAY_$i")"; done)
  HAProxy:   $(env_get HAPROXY_STATS) (stats)
  logs:      $DIR/{postgres,haproxy,gw*}.log
  variables: $DIR/cluster.env (KEY=value; has the secrets)

  curl -sS $url/v1/chat/completions -H 'Authorization: Bearer $token' \\
    -H 'Content-Type: application/json' \\
    -d '{"model":"openclaw","user":"alice","messages":[{"role":"user","content":"hi"}]}'

EOF
}

case "$CMD" in
  up | run)
    begin_start
    # Taken ports fail now, before anything starts; 0 becomes a free port.
    PG_PORT=$(want_port PostgreSQL "$PG_PORT")
    HAPROXY_PORT=$(want_port HAProxy "$HAPROXY_PORT")
    build_binary
    TOKEN=${OPENCLAW_GATEWAY_TOKEN:-$(random_hex 16)}
    env_set OPENCLAW_GATEWAY_TOKEN "$TOKEN"
    start_postgres
    write_config
    # All at once, as a Deployment or `docker compose up` starts them: they
    # meet the same fresh database together.
    for i in $(seq 1 "$INSTANCES"); do
      launch_gateway "$i"
    done
    addrs=()
    for i in $(seq 1 "$INSTANCES"); do
      await_gateway "$i"
      addrs+=("$(env_get "GATEWAY_$i" | sed 's|^http://||')")
    done
    start_haproxy "${addrs[@]}"
    STARTING=0
    trap - EXIT INT TERM HUP
    print_summary
    if [ "$CMD" = up ]; then
      echo "  stop:      scripts/cluster.sh down$([ "$DIR" = "$ROOT/target/cluster" ] || echo " --dir $DIR")"
      exit 0
    fi
    echo "  running in the foreground: Ctrl-C stops everything"
    STOPPING=0
    stop_on_signal() {
      [ "$STOPPING" = 1 ] && return
      STOPPING=1
      trap - EXIT
      echo
      say "stopping (gateways drain first)…"
      stop_all
      say "stopped"
      exit 0
    }
    trap stop_on_signal INT TERM HUP
    trap 'stop_all' EXIT
    while true; do
      for i in $(seq 1 "$INSTANCES"); do
        if [ -f "$DIR/gw$i.pid" ] && ! live_pid "$DIR/gw$i.pid" "$DIR/gateway.json5" >/dev/null; then
          say "gateway $i exited; last lines of $DIR/gw$i.log:"
          tail -n 5 "$DIR/gw$i.log" >&2
          rm -f "$DIR/gw$i.pid"
        fi
      done
      live_pid "$DIR/haproxy.pid" "$DIR/haproxy.cfg" >/dev/null || { say "haproxy exited; stopping"; stop_on_signal; }
      sleep 1 &
      wait $! || true
    done
    ;;
  postgres)
    begin_start
    start_postgres
    STARTING=0
    trap - EXIT INT TERM HUP
    echo "WASMCLAW_DATABASE_URL=$(env_get WASMCLAW_DATABASE_URL)"
    ;;
  haproxy)
    need curl "Debian: apt-get install curl"
    need ss "Debian: apt-get install iproute2"
    if live_pid "$DIR/haproxy.pid" "$DIR/haproxy.cfg" >/dev/null; then
      die "HAProxy from $DIR is still running: scripts/cluster.sh down --dir $DIR"
    fi
    STARTING=1
    trap on_exit EXIT
    trap interrupted INT TERM HUP
    start_haproxy "${BACKENDS[@]}"
    STARTING=0
    trap - EXIT INT TERM HUP
    echo "WASMCLAW_URL=$(env_get WASMCLAW_URL)"
    ;;
  status)
    found=0
    if [ -f "$DIR/pgdata.path" ] && [ -f "$(cat "$DIR/pgdata.path")/postmaster.pid" ]; then
      echo "postgres  running on port $(env_get PG_PORT) (data $(cat "$DIR/pgdata.path"))"
      found=1
    fi
    for f in "$DIR"/gw*.pid; do
      [ -e "$f" ] || continue
      i=$(basename "$f" .pid | sed 's/^gw//')
      url=$(env_get "GATEWAY_$i")
      if pid=$(live_pid "$f" "$DIR/gateway.json5"); then
        echo "gateway $i $url pid $pid, /ready $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/ready")"
      else
        echo "gateway $i $url NOT RUNNING (log $DIR/gw$i.log)"
      fi
      found=1
    done
    if pid=$(live_pid "$DIR/haproxy.pid" "$DIR/haproxy.cfg"); then
      echo "haproxy   $(env_get WASMCLAW_URL) pid $pid, /ready $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(env_get WASMCLAW_URL)/ready"), stats $(env_get HAPROXY_STATS)"
      found=1
    fi
    [ "$found" = 1 ] || echo "nothing running from $DIR"
    ;;
  down)
    if anything_running; then
      say "stopping the cluster in $DIR (gateways drain first)…"
      stop_all
      say "stopped; logs kept in $DIR"
    else
      stop_all
      say "nothing was running from $DIR"
    fi
    ;;
esac
