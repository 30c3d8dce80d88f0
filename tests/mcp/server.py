"""A tool server for wasmclaw's MCP tests: the official MCP Python SDK's
server (FastMCP, named MCPServer since mcp 2) over Streamable HTTP, on loopback.

usage: server.py PORT SEEN_FILE [--json] [--versions V1,V2,...] [--mutable] [--list-ttl-ms MS]
(PORT 0: a free one. The port it listens on is the first line it prints.)

`tools/list` answers one tool per page, so clients must follow `nextCursor`.

Every HTTP request's method, Authorization, Mcp-Session-Id,
MCP-Protocol-Version and traceparent headers are appended to SEEN_FILE as a JSON line, so a
test can check what reached the server, with the JSON-RPC method of the body
(`rpc`). `--json` answers with application/json instead of an SSE stream.

`--versions` pins the protocol revisions the server speaks (the SDK speaks
all of them): a modern request (per-request `_meta`, 2026-07-28) to a server
pinned to handshake revisions only gets the plain 400 a handshake-era server
answers to a request without a session; `initialize` to a server pinned to
modern revisions only gets a 400 naming them; an `initialize` offering a
revision outside the pin is answered with the newest pinned one.

`--mutable` adds two tools that change the tool set: `grow` adds `multiply`
and says so (`notifications/tools/list_changed` in the call's SSE stream),
`shrink` removes `add` without a word (a later call of it answers "Unknown
tool"). The log line of a `tools/list` names its `cursor` (null for the first page).

`--list-ttl-ms` sets the `ttlMs` of `tools/list` results (2026-07-28's cache
directive: how long a client may reuse the list); the SDK's default is 0.
"""

import json
import os
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ListToolsResult
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS

port = int(sys.argv[1])
seen_file = sys.argv[2]
json_response = "--json" in sys.argv[3:]
pinned = None
if "--versions" in sys.argv:
    pinned = sys.argv[sys.argv.index("--versions") + 1].split(",")
mutable = "--mutable" in sys.argv[3:]
list_ttl_ms = int(sys.argv[sys.argv.index("--list-ttl-ms") + 1]) if "--list-ttl-ms" in sys.argv else 0



class PagedServer(MCPServer):
    """The SDK's server, its tool list split into pages of one (the SDK does not page by itself)."""

    async def _handle_list_tools(self, ctx, params):
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        more = str(start + 1) if start + 1 < len(tools) else None
        return ListToolsResult(tools=tools[start : start + 1], next_cursor=more, ttl_ms=list_ttl_ms)


server = PagedServer("wasmclaw-test-tools")
last_authorization = {"value": ""}


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return f"the sum is {a + b}"


@server.tool()
def divide(a: float, b: float) -> str:
    """Divide a by b."""
    if b == 0:
        # ToolError: a failure the SDK passes to the model (other exceptions it hides).
        raise ToolError("cannot divide by zero")
    return f"the quotient is {a / b}"


@server.tool()
def whoami() -> str:
    """Echo the Authorization header the server received (a careless server)."""
    return f"you sent authorization: {last_authorization['value']}"


def multiply(a: int, b: int) -> str:
    """Multiply two integers."""
    return f"the product is {a * b}"


if mutable:

    @server.tool()
    def grow() -> str:
        """Add the tool `multiply` (and tell the client its list changed)."""
        server.add_tool(multiply)
        return "multiply added"

    @server.tool()
    def shrink() -> str:
        """Remove the tool `add`, telling nobody."""
        server.remove_tool("add")
        return "add removed"


LIST_CHANGED = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\r\n\r\n'

app = server.streamable_http_app(json_response=json_response)


async def plain(send, status, body):
    """A whole response with a plain-text body."""
    headers = [(b"content-type", b"text/plain")] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


def refusal(version, body):
    """Why a server pinned to `pinned` refuses this request, or None (and a rewritten body)."""
    rpc = body.get("method") if isinstance(body, dict) else None
    handshake = [v for v in pinned if v in HANDSHAKE_PROTOCOL_VERSIONS]
    if rpc == "initialize":
        if not handshake:
            return f"this server speaks only {pinned} and has no initialize"
        offered = body.get("params", {}).get("protocolVersion")
        if offered not in handshake:
            # Answered by the SDK with the version asked for: ask for the newest pinned one.
            newest = max(handshake, key=KNOWN_PROTOCOL_VERSIONS.index)
            body["params"]["protocolVersion"] = newest
        return None
    if version is not None and version not in pinned:
        if version in HANDSHAKE_PROTOCOL_VERSIONS or not any(v not in HANDSHAKE_PROTOCOL_VERSIONS for v in pinned):
            # What a handshake-era server answers to a request with no session.
            return "Bad Request: Missing session ID"
    return None


async def recording(scope, receive, send):
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    last_authorization["value"] = headers.get("authorization", "")
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    line = {
        "method": scope["method"],
        "rpc": body.get("method") if isinstance(body, dict) else None,
        "authorization": headers.get("authorization"),
        "session": headers.get("mcp-session-id"),
        "version": headers.get("mcp-protocol-version"),
        "cursor": ((body.get("params") or {}).get("cursor") if isinstance(body, dict) else None),
        "tool": ((body.get("params") or {}).get("name") if isinstance(body, dict) else None),
        "traceparent": headers.get("traceparent"),
    }
    with open(seen_file, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    if pinned is not None and scope["method"] == "POST":
        why = refusal(headers.get("mcp-protocol-version"), body)
        if why is not None:
            await plain(send, 400, why)
            return
        raw = json.dumps(body).encode() if body is not None else raw
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        scope["headers"].append((b"content-length", str(len(raw)).encode()))
    replayed = {"done": False}

    async def replay():
        if not replayed["done"]:
            replayed["done"] = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    if mutable and line["rpc"] == "tools/call" and line["tool"] == "grow":
        # The notification rides the call's stream, ahead of its answer.
        sse = {"value": False, "told": False}

        async def telling(message):
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                sse["value"] = content_type.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and sse["value"] and not sse["told"] and message.get("body"):
                sse["told"] = True
                message = dict(message)
                message["body"] = LIST_CHANGED + message["body"]
            await send(message)

        await app(scope, replay, telling)
        return
    await app(scope, replay, send)


# Bound here, and the port printed once it listens: a test that picked a free
# port and let it go could otherwise meet another process on it and take that
# one for this server (port 0 picks a free one, as the tests do).
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(128)
print(listener.getsockname()[1], flush=True)
# Nobody reads on: anything printed later must not meet a closed pipe.
os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
uvicorn.Server(uvicorn.Config(recording, log_level="warning")).run(sockets=[listener])
