#!/usr/bin/env python3
"""Attacks on a wasmclaw gateway on 127.0.0.1, each bounded in sockets and
seconds, and what the gateway held while they ran.

Run through scripts/attack.sh, which builds and starts the gateway. Standard
library only. Unauthenticated attacks (each from its own loopback source
addresses, so the per-client cap sees distinct clients):

  slowloris       many sockets sending half a header line, one byte a second
  ws-frame-flood  WebSocket upgrades that send a few huge text frames before `connect`
  ws-handshakes   many WebSocket upgrades that never send `connect`
  handshake-starvation  one address reopening upgrades it never completes while
                  another client logs in again and again (how many logins succeed)
  pg-login-flood  (gateway on PostgreSQL: attack.sh --postgres) wrong tokens from
                  many addresses while stored-session requests run; prints refusals,
                  their outcomes, /ready and the rows of `auth_failures`

Hostile agents (the faults fixture, installed by attack.sh) and an
authenticated flood:

  tool-index      a guest emitting a tool call with index 4000000000
  tool-spam       a guest reporting 300 server-side tool calls of 2 MiB each
  http-pin        a guest holding many unread 8 MiB outbound responses
  run-board       many WebSocket `agent` runs with large replies, then the socket closes

While each runs, /health is probed every 100 ms twice over: on a keep-alive
connection opened before the attack, and on a new connection each time from an
address the attack does not use. RSS and open descriptors come from /proc.
"""

import argparse
import asyncio
import base64
import os
import json
import resource
import statistics
import struct
import subprocess
import time

PROBE_EVERY = 0.1
PROBE_TIMEOUT = 2.0
PROBE_ADDR = "127.0.0.200"
KEEPALIVE_ADDR = "127.0.0.201"
HOSTILE_ADDR = "127.0.0.31"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Sampler:
    """RSS and descriptor count of the gateway every 50 ms."""

    def __init__(self, pid):
        self.pid, self.rss, self.fds = pid, [], []

    async def run(self):
        while True:
            self.rss.append(rss_kib(self.pid))
            self.fds.append(open_fds(self.pid))
            await asyncio.sleep(0.05)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return status, body


async def http_get(host, port, path, token=None, local=None):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0) if local else None)
    try:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode())
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def metrics(host, port, token):
    _, body = await http_get(host, port, "/metrics", token, local=PROBE_ADDR)
    values = {}
    for line in body.decode().splitlines():
        if line.startswith(("wasmclaw_connections", "wasmclaw_accept", "wasmclaw_run_failures", "wasmclaw_ws_run")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


class Prober:
    """/health latencies (or failures) during an attack."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.fresh, self.kept = [], []
        self.kept_writer = None

    async def fresh_loop(self):
        while True:
            started = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(
                    http_get(self.host, self.port, "/health", local=PROBE_ADDR), PROBE_TIMEOUT
                )
                self.fresh.append(time.monotonic() - started if status == 200 else None)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                self.fresh.append(None)
            await asyncio.sleep(max(0, PROBE_EVERY - (time.monotonic() - started)))

    async def kept_loop(self):
        try:
            await self._kept_loop()
        finally:
            if self.kept_writer is not None:
                self.kept_writer.close()

    async def _kept_loop(self):
        reader = writer = None
        while True:
            started = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port, local_addr=(KEEPALIVE_ADDR, 0))
                    self.kept_writer = writer
                writer.write(f"GET /health HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
                await writer.drain()
                status, _ = await asyncio.wait_for(read_response(reader), PROBE_TIMEOUT)
                self.kept.append(time.monotonic() - started if status == 200 else None)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                self.kept.append(None)
                if writer is not None:
                    writer.close()
                reader = writer = None
            await asyncio.sleep(max(0, PROBE_EVERY - (time.monotonic() - started)))


def latency(samples):
    ok = [s * 1000 for s in samples if s is not None]
    failed = sum(1 for s in samples if s is None)
    if not ok:
        return f"{len(samples)} probes, all failed"
    return f"median {statistics.median(ok):7.1f} ms  max {max(ok):7.1f} ms  failed {failed}/{len(samples)}"


async def hold_until_closed(reader, deadline):
    """Seconds until the gateway closed the socket, or None if it was still open at `deadline`."""
    started = time.monotonic()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                return time.monotonic() - started
    except asyncio.TimeoutError:
        return None
    except OSError:
        return time.monotonic() - started


async def slowloris(host, port, n, seconds, addrs):
    """Half a header line, then one more byte a second; never the end of the head."""
    deadline = time.monotonic() + seconds
    outcome = {"connect_failed": 0, "closed_after": [], "still_open": 0}

    async def one(i):
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(addrs[i % len(addrs)], 0))
        except OSError:
            outcome["connect_failed"] += 1
            return
        writer.write(f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode())

        async def trickle():
            while True:
                await asyncio.sleep(1)
                writer.write(b"a")
                await writer.drain()

        dripping = asyncio.create_task(trickle())
        closed = await hold_until_closed(reader, deadline)
        dripping.cancel()
        writer.close()
        if closed is None:
            outcome["still_open"] += 1
        else:
            outcome["closed_after"].append(closed)

    await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    return outcome


async def ws_upgrade(host, port, local):
    """Open a WebSocket; returns (reader, writer) after the 101, or raises."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise OSError(f"no upgrade: {head[:40]!r}")
    return reader, writer


def text_frame_header(length):
    """A masked FIN text frame header with an all-zero mask: the payload goes out as is."""
    if length < 126:
        return struct.pack("!BB", 0x81, 0x80 | length) + b"\0\0\0\0"
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 0x80 | 126, length) + b"\0\0\0\0"
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + b"\0\0\0\0"


async def ws_frame_flood(host, port, sockets, frames, frame_bytes, seconds, addrs):
    """Upgrade, then send `frames` text frames of `frame_bytes` each before any `connect`."""
    deadline = time.monotonic() + seconds
    payload = b"x" * frame_bytes
    header = text_frame_header(frame_bytes)
    outcome = {"upgrade_failed": 0, "bytes_sent": 0, "closed_after": [], "still_open": 0}

    async def one(i):
        try:
            reader, writer = await ws_upgrade(host, port, addrs[i % len(addrs)])
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            outcome["upgrade_failed"] += 1
            return
        started = time.monotonic()

        async def send():
            for _ in range(frames):
                writer.write(header)
                writer.write(payload)
                await writer.drain()
                outcome["bytes_sent"] += len(header) + len(payload)

        sending = asyncio.create_task(send())
        closed = await hold_until_closed(reader, deadline)
        sending.cancel()
        writer.close()
        if closed is None:
            outcome["still_open"] += 1
        else:
            outcome["closed_after"].append(time.monotonic() - started)

    await asyncio.gather(*(one(i) for i in range(sockets)), return_exceptions=True)
    return outcome


async def ws_handshakes(host, port, n, seconds, addrs):
    """Upgrades that never send `connect`; held until the gateway closes them or time is up."""
    deadline = time.monotonic() + seconds
    outcome = {"upgrade_failed": 0, "closed_after": [], "still_open": 0}

    async def one(i):
        try:
            reader, writer = await ws_upgrade(host, port, addrs[i % len(addrs)])
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            outcome["upgrade_failed"] += 1
            return
        closed = await hold_until_closed(reader, deadline)
        writer.close()
        if closed is None:
            outcome["still_open"] += 1
        else:
            outcome["closed_after"].append(closed)

    await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    return outcome


def ws_text_frame(text):
    """A masked text frame, as a client must send it."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return text_frame_header(len(payload))[:-4] + mask + masked


async def ws_read_text(reader):
    """The next server text frame's payload (unmasked frames, no fragments); None on a close."""
    while True:
        head = await reader.readexactly(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(length)
        if opcode == 8:
            return None
        if opcode == 1:
            return payload.decode()


async def ws_login(host, port, local, token):
    """Upgrade, read the challenge, `connect`; 'ok', or why not ('refused 503', 'auth error', ...)."""
    try:
        reader, writer = await ws_upgrade(host, port, local)
    except OSError as e:
        return "upgrade refused" if "no upgrade" in str(e) else f"connect failed ({e.__class__.__name__})"
    except (asyncio.TimeoutError, asyncio.IncompleteReadError):
        return "upgrade timed out"
    try:
        await asyncio.wait_for(ws_read_text(reader), 10)
        connect = {
            "type": "req", "id": "1", "method": "connect",
            "params": {"minProtocol": 4, "maxProtocol": 4, "auth": {"token": token},
                       "client": {"id": "attack.py", "version": "1", "platform": "linux", "mode": "cli"}},
        }
        writer.write(ws_text_frame(json.dumps(connect)))
        await writer.drain()
        answer = await asyncio.wait_for(ws_read_text(reader), 10)
        return "ok" if answer and json.loads(answer).get("ok") else f"refused: {answer}"
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return "no answer to connect"
    finally:
        writer.close()


# --- Hostile agents and the run-board flood (issue 24) ---------------------


async def http_post_json(host, port, path, token, body, timeout):
    """POST a JSON body; returns (status, parsed body or text)."""
    import json

    reader, writer = await asyncio.open_connection(host, port, local_addr=(HOSTILE_ADDR, 0))
    try:
        data = json.dumps(body).encode()
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + data
        )
        await writer.drain()
        status, raw = await asyncio.wait_for(read_response(reader), timeout)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")
    finally:
        writer.close()


async def handshake_starvation(host, port, token, holders, seconds, attacker, client):
    """`holders` loops on one address, each holding an upgrade until the gateway
    closes it and then reopening it; meanwhile another address logs in, one
    login after another."""
    deadline = time.monotonic() + seconds
    outcome = {"attacker_upgrades": 0, "attacker_refused": 0, "logins": 0, "logins_ok": 0, "login_failures": {}}

    async def hold():
        while time.monotonic() < deadline:
            try:
                reader, writer = await ws_upgrade(host, port, attacker)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                outcome["attacker_refused"] += 1
                await asyncio.sleep(0.05)
                continue
            outcome["attacker_upgrades"] += 1
            await hold_until_closed(reader, deadline)
            writer.close()

    async def login():
        await asyncio.sleep(1)  # let the attacker take what it can first
        while time.monotonic() < deadline:
            result = await ws_login(host, port, client, token)
            outcome["logins"] += 1
            if result == "ok":
                outcome["logins_ok"] += 1
            else:
                outcome["login_failures"][result] = outcome["login_failures"].get(result, 0) + 1
            await asyncio.sleep(0.2)

    await asyncio.gather(*(hold() for _ in range(holders)), login(), return_exceptions=True)
    return outcome


def auth_failure_rows(database_url):
    """Rows of `auth_failures`, through psql (standard library only here)."""
    psql = next(iter(sorted(glob_psql())), None)
    if psql is None:
        return "psql not found"
    out = subprocess.run([psql, database_url, "-Atc", "SELECT count(*) FROM auth_failures"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else f"psql failed: {out.stderr.strip()[:120]}"


def glob_psql():
    import glob

    return glob.glob("/usr/lib/postgresql/*/bin/psql") + [p for p in ["/usr/bin/psql"] if os.path.exists(p)]


async def http_request(host, port, method, path, token=None, local=None, body=None, headers=()):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0) if local else None)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(data)}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head.append("Content-Type: application/json")
        head.extend(headers)
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def pg_login_flood(host, port, token, database_url, addresses, per_address, seconds):
    """Wrong tokens from `addresses` loopback addresses at once, while one
    client runs stored-session turns and another polls /ready."""
    deadline = time.monotonic() + seconds
    outcome = {"refusals": {}, "session_turns": {}, "turn_seconds": [], "ready": {}, "rows_during_max": 0}
    done = asyncio.Event()

    def count(table, key):
        table[key] = table.get(key, 0) + 1

    async def flood(i):
        local = f"127.0.2.{i + 1}"
        for n in range(per_address):
            if time.monotonic() >= deadline:
                return
            try:
                status, _ = await http_request(host, port, "GET", "/v1/models", f"wrong-{i}-{n}", local)
                count(outcome["refusals"], status)
            except (OSError, asyncio.IncompleteReadError) as e:
                count(outcome["refusals"], e.__class__.__name__)

    async def turns():
        i = 0
        while not done.is_set():
            body = {"model": "openclaw", "messages": [{"role": "user", "content": "hi"}]}
            started = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(
                    http_request(host, port, "POST", "/v1/chat/completions", token, PROBE_ADDR, body,
                                 [f"x-openclaw-session-key: attack-{i % 20}"]),
                    10,
                )
                count(outcome["session_turns"], status)
                outcome["turn_seconds"].append(time.monotonic() - started)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                count(outcome["session_turns"], e.__class__.__name__)
            i += 1

    async def ready():
        while not done.is_set():
            try:
                status, _ = await asyncio.wait_for(http_request(host, port, "GET", "/ready", local=KEEPALIVE_ADDR), 5)
                count(outcome["ready"], status)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                count(outcome["ready"], e.__class__.__name__)
            rows = await asyncio.to_thread(auth_failure_rows, database_url)
            if rows.isdigit():
                outcome["rows_during_max"] = max(outcome["rows_during_max"], int(rows))
            await asyncio.sleep(0.2)

    watchers = [asyncio.create_task(turns()), asyncio.create_task(ready())]
    await asyncio.gather(*(flood(i) for i in range(addresses)), return_exceptions=True)
    done.set()
    await asyncio.gather(*watchers, return_exceptions=True)
    outcome["rows_right_after"] = auth_failure_rows(database_url)
    return outcome


def error_code(body):
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code") or body["error"].get("type")
    return None


async def hostile_runs(host, port, token, agent, message, runs, timeout):
    """`runs` chat requests to a hostile agent: how each ended, and whether the gateway answered after."""
    outcome = {"answers": {}, "first_error": "", "first_reply": "", "echo_after": ""}
    for _ in range(runs):
        body = {"model": f"agent:{agent}", "messages": [{"role": "user", "content": message}]}
        try:
            status, answer = await http_post_json(host, port, "/v1/chat/completions", token, body, timeout)
            key = f"{status} {error_code(answer) or 'ok'}"
            if not outcome["first_error"] and isinstance(answer, dict) and "error" in answer:
                outcome["first_error"] = answer["error"].get("message", "")[:160]
            if not outcome["first_reply"] and status == 200 and isinstance(answer, dict):
                outcome["first_reply"] = repr(answer["choices"][0]["message"]["content"][:100])
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            key = f"no answer ({type(e).__name__})"
        outcome["answers"][key] = outcome["answers"].get(key, 0) + 1
    body = {"model": "agent:main", "messages": [{"role": "user", "content": "still there?"}]}
    try:
        status, answer = await http_post_json(host, port, "/v1/chat/completions", token, body, 10)
        outcome["echo_after"] = f"{status} {answer['choices'][0]['message']['content']!r}" if status == 200 else status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, KeyError, TypeError) as e:
        outcome["echo_after"] = f"failed ({type(e).__name__})"
    return outcome


async def pin_server(port, body_mib):
    """Serves `body_mib` MiB to every GET on 127.0.0.1:`port`, for the http-pin agent to hold unread."""
    chunk = b"p" * (1 << 20)

    async def serve(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {body_mib << 20}\r\n\r\n".encode())
            for _ in range(body_mib):
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


async def ws_read_frame(reader):
    """One server frame (unmasked): (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(length)


async def ws_send_json(writer, value):
    import json

    data = json.dumps(value).encode()
    writer.write(text_frame_header(len(data)) + data)
    await writer.drain()


async def ws_until(reader, want, timeout):
    """Read frames until a JSON text frame matches `want`; returns it."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        opcode, payload = await asyncio.wait_for(ws_read_frame(reader), max(0.1, deadline - time.monotonic()))
        if opcode == 8:
            raise OSError("the gateway closed the WebSocket")
        if opcode == 1:
            frame = json.loads(payload)
            if want(frame):
                return frame


async def run_board_flood(host, port, token, runs, seconds):
    """WebSocket `agent` runs of the `large` agent, one after another, then the socket closes."""
    outcome = {"runs_ok": 0, "runs_failed": 0, "refused": 0, "first_refusal": ""}
    deadline = time.monotonic() + seconds
    reader, writer = await ws_upgrade(host, port, "127.0.0.30")
    try:
        await ws_until(reader, lambda f: f.get("event") == "connect.challenge", 10)
        params = {
            "minProtocol": 4, "maxProtocol": 4, "auth": {"token": token}, "role": "operator",
            "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"},
            "scopes": ["operator.write"],
        }  # fmt: skip
        await ws_send_json(writer, {"type": "req", "id": "connect", "method": "connect", "params": params})
        hello = await ws_until(reader, lambda f: f.get("id") == "connect", 10)
        if not hello.get("ok"):
            outcome["first_refusal"] = str(hello.get("error"))[:160]
            return outcome
        for i in range(runs):
            if time.monotonic() > deadline:
                break
            rid = f"flood-{i}"
            params = {"message": "hi", "agentId": "large", "sessionKey": f"agent:large:flood-{i}",
                      "idempotencyKey": f"flood-{i}-{os.getpid()}"}  # fmt: skip
            await ws_send_json(writer, {"type": "req", "id": rid, "method": "agent", "params": params})
            answer = await ws_until(
                reader,
                lambda f: f.get("id") == rid and (not f.get("ok") or f["payload"].get("status") != "accepted"),
                max(1, deadline - time.monotonic()),
            )
            if not answer.get("ok"):
                outcome["refused"] += 1
                outcome["first_refusal"] = outcome["first_refusal"] or str(answer.get("error"))[:160]
            elif answer["payload"].get("status") == "ok":
                outcome["runs_ok"] += 1
            else:
                outcome["runs_failed"] += 1
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        outcome["stopped_by"] = type(e).__name__
    finally:
        writer.close()
    return outcome


def describe(outcome):
    parts = []
    for key, value in outcome.items():
        if key == "closed_after":
            at_once = [v for v in value if v < 0.5]
            later = [v for v in value if v >= 0.5]
            parts.append(f"closed by the gateway at once (< 0.5 s): {len(at_once)}")
            if later:
                parts.append(
                    f"closed by the gateway later: {len(later)} (median {statistics.median(later):.2f} s, "
                    f"max {max(later):.2f} s)"
                )
            else:
                parts.append("closed by the gateway later: 0")
        elif key == "bytes_sent":
            parts.append(f"sent {value / (1 << 20):.0f} MiB")
        elif key == "answers":
            parts.append("answers: " + ", ".join(f"{n} x {k}" for k, n in sorted(value.items())))
        elif isinstance(value, str) and not value:
            continue
        else:
            parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


async def run_attack(args, pid, name, attack):
    host, port = "127.0.0.1", args.port
    before_metrics = await metrics(host, port, args.token)
    before_rss, before_fds = rss_kib(pid), open_fds(pid)
    sampler, prober = Sampler(pid), Prober(host, port)
    helpers = [asyncio.create_task(t) for t in (sampler.run(), prober.fresh_loop(), prober.kept_loop())]
    await asyncio.sleep(0.5)  # a few probes before the attack starts
    started = time.monotonic()
    outcome = await attack
    took = time.monotonic() - started
    for t in helpers:
        t.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    await asyncio.sleep(args.settle)
    after_metrics = await metrics(host, port, args.token)
    after_rss, after_fds = rss_kib(pid), open_fds(pid)

    print(f"\n== {name} ({took:.1f} s)")
    print(f"  attacker:  {describe(outcome)}")
    print(f"  /health, kept-alive connection:  {latency(prober.kept)}")
    print(f"  /health, new connection each:    {latency(prober.fresh)}")
    print(
        f"  gateway RSS: before {before_rss / 1024:.1f} MiB, peak {max(sampler.rss) / 1024:.1f} MiB, "
        f"after (+{args.settle:.0f} s) {after_rss / 1024:.1f} MiB"
    )
    print(f"  gateway fds: before {before_fds}, peak {max(sampler.fds)}, after {after_fds}")
    for key in sorted(after_metrics):
        delta = after_metrics[key] - before_metrics.get(key, 0)
        if "_total" in key and delta:
            print(f"  {key} +{delta:.0f}")
    print(
        f"  open connections now: {after_metrics.get('wasmclaw_connections_open', -1):.0f} "
        f"(max {after_metrics.get('wasmclaw_connections_max', -1):.0f}, "
        f"per client {after_metrics.get('wasmclaw_connections_max_per_client', -1):.0f})"
    )


async def run_pg_login_flood(args):
    if not args.database_url:
        print("\n== PostgreSQL login flood: skipped (the gateway is not on PostgreSQL; run attack.sh --postgres,"
              " which needs initdb from the Debian package `postgresql`)")
        return
    host, port = "127.0.0.1", args.port
    before_rss = rss_kib(args.pid)
    started = time.monotonic()
    outcome = await pg_login_flood(
        host, port, args.token, args.database_url, args.flood_addresses, args.flood_per_address, args.seconds
    )
    took = time.monotonic() - started
    print(f"\n== PostgreSQL login flood: {args.flood_addresses} addresses x {args.flood_per_address} wrong tokens"
          f" ({took:.1f} s)")
    print(f"  wrong tokens, by answer:        {outcome['refusals']}")
    print(f"  stored-session turns, by answer: {outcome['session_turns']}; {latency(outcome['turn_seconds'])}")
    print(f"  /ready during the flood:        {outcome['ready']}")
    print(f"  auth_failures rows: most seen during {outcome['rows_during_max']}, right after"
          f" {outcome['rows_right_after']}", end="")
    # Rows whose window ended are pruned: wait out the window the gateway was given.
    await asyncio.sleep(args.flood_window + 2)
    print(f", {args.flood_window + 2:.0f} s later {auth_failure_rows(args.database_url)}")
    print(f"  gateway RSS: before {before_rss / 1024:.1f} MiB, after {rss_kib(args.pid) / 1024:.1f} MiB")


async def run_handshake_starvation(args, attacker, client):
    host, port = "127.0.0.1", args.port
    outcome = await handshake_starvation(host, port, args.token, args.holders, args.seconds, attacker, client)
    print(f"\n== WebSocket handshake starvation: {args.holders} upgrades held and reopened from {attacker},"
          f" a real client logging in from {client} ({args.seconds:.0f} s)")
    print(f"  attacker: {outcome['attacker_upgrades']} upgrades accepted, {outcome['attacker_refused']} refused")
    print(f"  real client: {outcome['logins_ok']} of {outcome['logins']} logins succeeded"
          + (f"; failures: {outcome['login_failures']}" if outcome["login_failures"] else ""))


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--sockets", type=int, default=1500, help="slowloris and handshake-flood sockets")
    parser.add_argument("--seconds", type=float, default=15, help="longest any one attack runs")
    parser.add_argument("--ws-sockets", type=int, default=16, help="frame-flood sockets")
    parser.add_argument("--ws-frames", type=int, default=3, help="frames per frame-flood socket")
    parser.add_argument("--ws-frame-mib", type=int, default=32, help="size of each flood frame")
    parser.add_argument("--settle", type=float, default=3, help="pause before the 'after' figures")
    parser.add_argument("--only", action="append", help="run only these attacks")
    parser.add_argument("--holders", type=int, default=200, help="upgrades the handshake-starvation attacker holds")
    parser.add_argument("--database-url", help="the gateway's PostgreSQL (enables pg-login-flood)")
    parser.add_argument("--flood-addresses", type=int, default=50, help="pg-login-flood source addresses")
    parser.add_argument("--flood-per-address", type=int, default=200, help="wrong tokens per address")
    parser.add_argument("--flood-window", type=float, default=5, help="the gateway's rateLimit.windowMs, in s")
    parser.add_argument("--hostile", action="store_true", help="attack.sh installed the hostile agents")
    parser.add_argument("--pin-port", type=int, help="port the http-pin agent may fetch from (attack.sh)")
    parser.add_argument("--pin-count", type=int, default=32, help="unread responses the http-pin agent holds")
    parser.add_argument("--pin-mib", type=int, default=8, help="size of each pinned response")
    parser.add_argument("--board-runs", type=int, default=150, help="WebSocket runs in the run-board flood")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    wanted = lambda name: not args.only or name in args.only  # noqa: E731
    one_client = ["127.0.0.10"]
    four_clients = [f"127.0.0.{i}" for i in range(20, 24)]
    host, port = "127.0.0.1", args.port
    if wanted("slowloris"):
        await run_attack(
            args,
            args.pid,
            f"slowloris: {args.sockets} sockets from one address, half a header line, a byte a second",
            slowloris(host, port, args.sockets, args.seconds, one_client),
        )
    if wanted("ws-frame-flood"):
        await run_attack(
            args,
            args.pid,
            f"WebSocket frame flood before connect: {args.ws_sockets} sockets x {args.ws_frames} "
            f"text frames of {args.ws_frame_mib} MiB",
            ws_frame_flood(
                host, port, args.ws_sockets, args.ws_frames, args.ws_frame_mib << 20, args.seconds, four_clients
            ),
        )
    if wanted("ws-handshakes"):
        await run_attack(
            args,
            args.pid,
            f"WebSocket handshake flood: {args.sockets} upgrades from four addresses, never a connect",
            ws_handshakes(host, port, args.sockets, args.seconds, four_clients),
        )
    if wanted("handshake-starvation"):
        await run_handshake_starvation(args, "127.0.0.30", "127.0.0.31")
    if wanted("pg-login-flood"):
        await run_pg_login_flood(args)
    await hostile_agents(args, wanted)


async def hostile_agents(args, wanted):
    """The scenarios that need the faults fixture's agents (attack.sh --hostile)."""
    host, port, token = "127.0.0.1", args.port, args.token
    if not args.hostile:
        if any(wanted(n) for n in ("tool-index", "tool-spam", "http-pin", "run-board")) and args.only:
            print("\n(hostile-agent scenarios skipped: the faults fixture was not installed)")
        return
    if wanted("tool-index"):
        await run_attack(
            args,
            args.pid,
            "hostile agent: a tool call with index 4000000000, 5 runs",
            hostile_runs(host, port, token, "tool-index", "hi", 5, 30),
        )
    if wanted("tool-spam"):
        await run_attack(
            args,
            args.pid,
            "hostile agent: 300 tool reports of a 1 MiB id and a 1 MiB name under a 64 MiB output limit",
            hostile_runs(host, port, token, "tool-spam", "hi", 1, 120),
        )
    if wanted("http-pin") and args.pin_port:
        server = await pin_server(args.pin_port, args.pin_mib)
        try:
            message = f"http-pin http://127.0.0.1:{args.pin_port}/big {args.pin_count}"
            await run_attack(
                args,
                args.pid,
                f"hostile agent: {args.pin_count} unread outbound responses of {args.pin_mib} MiB held at once",
                hostile_runs(host, port, token, "http-pin", message, 1, 120),
            )
        finally:
            server.close()
    if wanted("run-board"):
        await run_attack(
            args,
            args.pid,
            f"run-board flood: {args.board_runs} WebSocket agent runs with 1.9 MB replies, then the socket closes",
            run_board_flood(host, port, token, args.board_runs, max(args.seconds, 240)),
        )


if __name__ == "__main__":
    asyncio.run(main())
