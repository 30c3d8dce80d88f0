"""A small client for MCP tool servers over Streamable HTTP, on `fetch.py`.

Enough to list a server's tools and call one: the `initialize` handshake
(revision 2025-11-25, or the older one the server answers), the session id
the server assigns, `tools/list` (every page) and `tools/call`, with answers
as JSON or as an SSE stream. Requests go through the gateway like any other:
the server's URL must be in the agent's `http.allow`, and the gateway adds the
credentials its `http.credentials` configure (the agent never sees them).
"""

import json
from dataclasses import dataclass

import fetch

PROTOCOL_VERSION = "2025-11-25"


class McpError(Exception):
    """The server could not be reached or refused a request (a tool's own
    failure is a `ToolResult` with `is_error`)."""


@dataclass
class ToolResult:
    """What a tool answered: its text parts joined, and whether it failed."""

    text: str
    is_error: bool


class McpClient:
    """One MCP server, connected."""

    def __init__(self, url: str):
        self.url = url
        self.session = None  # the Mcp-Session-Id the server assigned, if any
        self.protocol_version = PROTOCOL_VERSION
        self._next_id = 0

    @classmethod
    def connect(cls, url: str) -> "McpClient":
        """Connect to the server at `url`: the `initialize` handshake."""
        client = cls(url)
        info = {"name": "wasmclaw-agent", "version": "0.1.0"}
        result = client._call("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": info})
        client.protocol_version = result.get("protocolVersion", PROTOCOL_VERSION)
        client._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return client

    def list_tools(self) -> list[dict]:
        """Every tool the server offers: `name`, `description`, `inputSchema`."""
        tools, cursor = [], None
        while True:
            result = self._call("tools/list", {"cursor": cursor} if cursor else {})
            tools += result.get("tools", [])
            cursor = result.get("nextCursor")
            if not cursor:
                return tools

    def call_tool(self, name: str, arguments: dict) -> ToolResult:
        """Run tool `name` with `arguments`."""
        result = self._call("tools/call", {"name": name, "arguments": arguments})
        parts = [part.get("text", "") for part in result.get("content", []) if part.get("type") == "text"]
        return ToolResult("\n".join(parts), bool(result.get("isError")))

    def _call(self, method: str, params: dict) -> dict:
        self._next_id += 1
        response = self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        try:
            messages = _messages(response)
        except ValueError:
            raise McpError(f"{method}: the server's answer is not JSON-RPC")
        answer = next((m for m in messages if isinstance(m, dict) and m.get("id") == self._next_id), None)
        if answer is None:
            raise McpError(f"{method}: the server sent no answer ({response.status})")
        if "error" in answer:
            raise McpError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return answer.get("result", {})

    def _send(self, message: dict) -> fetch.Response:
        headers = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]
        if self.session:
            headers += [("mcp-session-id", self.session), ("mcp-protocol-version", self.protocol_version)]
        try:
            response = fetch.request("POST", self.url, headers, json.dumps(message).encode())
        except fetch.FetchError as e:
            raise McpError(f"cannot reach {self.url}: {e}")
        if response.status >= 300:
            raise McpError(f"{message['method']}: the server answered {response.status}")
        self.session = response.header("mcp-session-id") or self.session
        return response


def _messages(response: fetch.Response) -> list[dict]:
    """The JSON-RPC messages of an answer: one JSON body, or the `data:` events of an SSE stream."""
    text = response.body.decode("utf-8", errors="replace")
    if (response.header("content-type") or "").startswith("text/event-stream"):
        events = text.replace("\r\n", "\n").split("\n\n")
        data = ["\n".join(ln[5:].removeprefix(" ") for ln in e.split("\n") if ln.startswith("data:")) for e in events]
        return [json.loads(d) for d in data if d.strip()]
    return [json.loads(text)] if text.strip() else []
