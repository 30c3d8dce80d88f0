"""A tool server for wasmclaw's MCP tests: the official MCP Python SDK's
server (FastMCP, named MCPServer since mcp 2) over Streamable HTTP, on loopback.

usage: server.py PORT SEEN_FILE [--json]

`tools/list` answers one tool per page, so clients must follow `nextCursor`.

Every HTTP request's method, Authorization, Mcp-Session-Id and
MCP-Protocol-Version headers are appended to SEEN_FILE as a JSON line, so a
test can check what reached the server. `--json` answers with
application/json instead of an SSE stream.
"""

import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ListToolsResult

port = int(sys.argv[1])
seen_file = sys.argv[2]
json_response = "--json" in sys.argv[3:]



class PagedServer(MCPServer):
    """The SDK's server, its tool list split into pages of one (the SDK does not page by itself)."""

    async def _handle_list_tools(self, ctx, params):
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        more = str(start + 1) if start + 1 < len(tools) else None
        return ListToolsResult(tools=tools[start : start + 1], next_cursor=more)


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


app = server.streamable_http_app(json_response=json_response)


async def recording(scope, receive, send):
    if scope["type"] == "http":
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        last_authorization["value"] = headers.get("authorization", "")
        line = {
            "method": scope["method"],
            "authorization": headers.get("authorization"),
            "session": headers.get("mcp-session-id"),
            "version": headers.get("mcp-protocol-version"),
        }
        with open(seen_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    await app(scope, receive, send)


uvicorn.run(recording, host="127.0.0.1", port=port, log_level="warning")
