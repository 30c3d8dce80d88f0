"""A fake wasmclaw gateway for unit tests, in plain Python (contract 0.2).

The bindings componentize-py generates (`componentize-py -d wit -w agent
bindings .`) declare the gateway's functions; FakeHost.run replaces them for
the duration of one run with fakes that serve config values, session history
and state, scripted model answers scripted HTTP answers (to `fetch.request`
and `fetch.get`) and MCP servers (`FakeMcpServer`, which `mcp.McpClient`
talks to), and that record what the agent emitted, logged, asked the model
and sent out.
Like the gateway, a host keeps its session: a run that succeeds adds its turn
to the history and keeps its state writes; a failed one does not.
"""

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from unittest import mock

from componentize_py_types import Err
from wit_world.imports import config, llm, log, output, session, tool_activity
from wit_world.imports import wasmclaw_agent_types as types
from wit_world.imports.wasi_http_types import ErrorCode_HttpRequestDenied

try:
    import fetch  # the project's wasi:http client, if it has one
except ImportError:
    fetch = None


@dataclass
class FakeRequest:
    """One outbound request, as the fake gateway passed it on."""

    method: str
    url: str
    headers: list  # (name, value), the agent's then the injected ones
    injected: list  # names of the headers the gateway's credentials added
    status: int | None  # None: denied
    body: bytes = b""

    def json(self):
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class FakeRun:
    """What one run did."""

    def __init__(self):
        self.events = []  # every event emitted, in order
        self.logs = []  # (log.Level, message)
        self.llm_requests = []  # every llm.CompletionRequest
        self.http_requests = []  # every FakeRequest
        self.tool_reports = []  # ("called", ToolCall) or ("returned", call_id, output, is_error)
        self.error = None  # the AgentError the run failed with, if any
        self.panic = None  # what the agent reported with log.panicked

    def text(self) -> str:
        return "".join(e.value for e in self.events if isinstance(e, types.Event_Text))

    def mcp_calls(self) -> list:
        """The MCP tools the agent called: (server URL, tool name, arguments) of every tools/call, in order."""
        calls = [(r.url, r.json()) for r in self.http_requests]
        return [(url, rpc["params"]["name"], rpc["params"].get("arguments", {}))
                for url, rpc in calls if isinstance(rpc, dict) and rpc.get("method") == "tools/call"]


#: The session id every fake MCP server assigns.
MCP_SESSION = "fake-mcp-session"


class FakeMcpServer:
    """An MCP server (Streamable HTTP, JSON answers) whose tools are Python functions."""

    def __init__(self, name: str):
        self.name = name
        self.tools = []  # (tool as tools/list shows it, function)

    def tool(self, name: str, description: str, input_schema: dict, run) -> "FakeMcpServer":
        """Offer tool `name`; `run(arguments)` returns the result text, or raises to fail
        (the message is the result the model sees, with isError)."""
        self.tools.append(({"name": name, "description": description, "inputSchema": input_schema}, run))
        return self

    def answer(self, session: str | None, body: bytes) -> tuple[int, list, bytes]:
        """One JSON-RPC request over Streamable HTTP: status, headers, body."""
        try:
            rpc = json.loads(body)
        except ValueError:
            return 400, [], b"not JSON"
        method = rpc.get("method")
        if method != "initialize" and session != MCP_SESSION:
            return 400, [], b"Bad Request: missing or unknown Mcp-Session-Id"
        if "id" not in rpc:
            return 202, [], b""  # a notification
        if method == "initialize":
            info = {"name": self.name, "version": "0"}
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info}
        elif method == "tools/list":
            result = {"tools": [tool for tool, _ in self.tools]}
        elif method == "tools/call":
            name = rpc.get("params", {}).get("name")
            run = next((run for tool, run in self.tools if tool["name"] == name), None)
            if run is None:
                return _rpc(rpc["id"], error={"code": -32602, "message": f"Unknown tool: {name}"})
            try:
                text, failed = run(rpc["params"].get("arguments", {})), False
            except Exception as e:
                text, failed = str(e), True
            result = {"content": [{"type": "text", "text": text}], "isError": failed}
        else:
            return _rpc(rpc["id"], error={"code": -32601, "message": f"Method not found: {method}"})
        status, headers, body = _rpc(rpc["id"], result=result)
        return status, headers + ([("mcp-session-id", MCP_SESSION)] if method == "initialize" else []), body


def _rpc(id, **outcome) -> tuple[int, list, bytes]:
    message = {"jsonrpc": "2.0", "id": id, **outcome}
    return 200, [("content-type", "application/json")], json.dumps(message).encode()


class _Completion:
    def __init__(self, events):
        self._events = list(events)

    def next(self):
        if not self._events:
            return None
        event = self._events.pop(0)
        if isinstance(event, Err):
            raise event
        return event

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def message(role, text: str) -> types.Message:
    """A message with one text part."""
    content = [types.ContentPart_Text(text)] if text else []
    return types.Message(role=role, content=content, name=None, tool_call_id=None, tool_calls=[])


def _under(prefix: str, url: str) -> bool:
    rest = url[len(prefix):] if url.startswith(prefix) else None
    return rest is not None and (rest == "" or prefix.endswith("/") or rest[0] in "/?#")


class FakeHost:
    """A fake gateway for one agent's session."""

    def __init__(self, config=None, history=None, state=None):
        self.config = dict(config or {})
        self.history = list(history or [])
        self.state = dict(state or {})
        self.llm_answers = []  # lists of events, or an Err to fail `complete`
        self.http_answers = {}  # (METHOD, url) -> [(status, body)], in order; the last repeats
        self.credentials = []  # (url prefix, header, value)
        self.mcp_servers = {}  # url -> FakeMcpServer

    def llm_reply(self, text: str) -> "FakeHost":
        """Script the model's next answer: `text` in one piece."""
        self.llm_answers.append([types.Event_Text(text)])
        return self

    def llm_error(self, error) -> "FakeHost":
        """Script the next model call to fail, e.g. `llm.LlmError_Timeout("slow")`."""
        self.llm_answers.append(Err(error))
        return self

    def http_response(self, method: str, url: str, status: int, body: bytes | str) -> "FakeHost":
        """Answer `method url` (exactly) with `status` and `body`. Anything not scripted is denied."""
        body = body.encode() if isinstance(body, str) else body
        self.http_answers.setdefault((method.upper(), url), []).append((status, body))
        return self

    def http_credential(self, url_match: str, header: str, value: str) -> "FakeHost":
        """The gateway adds `header: value` to requests under `url_match` (`http.credentials`);
        answers never show the value to the agent."""
        self.credentials.append((url_match, header.lower(), value))
        return self

    def mcp_server(self, url: str, server: FakeMcpServer) -> "FakeHost":
        """Serve `server` at `url` (every POST to exactly that URL): `mcp.McpClient.connect(url)` works."""
        self.mcp_servers[url] = server
        return self

    def request(self, text: str) -> types.RunRequest:
        """The request a client sending one user message would produce."""
        return types.RunRequest(
            run_id="test-run", agent_id="test", session_key="agent:test:unit",
            messages=[message(types.Role.USER, text)], tools=[], user=None, params="{}",
        )

    def run(self, world, text: str) -> FakeRun:
        """Run `world` (your WitWorld) on one user message."""
        return self.run_request(world, self.request(text))

    def run_request(self, world, req: types.RunRequest) -> FakeRun:
        run, state = FakeRun(), dict(self.state)

        def complete(request):
            run.llm_requests.append(request)
            if not self.llm_answers:
                raise Err(llm.LlmError_Unavailable("no scripted model answer left: call FakeHost.llm_reply"))
            answer = self.llm_answers.pop(0)
            if isinstance(answer, Err):
                raise answer
            return _Completion(answer)

        def send(method, url, headers=(), body=b""):
            fetch.parse_url(url)  # a ValueError, as from the real one
            method, headers = method.upper(), [(name.lower(), value) for name, value in headers]
            secrets = [(h, v) for prefix, h, v in self.credentials if _under(prefix, url)]
            answers, server = self.http_answers.get((method, url)), self.mcp_servers.get(url)
            if answers:
                status, body_back = answers.pop(0) if len(answers) > 1 else answers[0]
                headers_back = []
            elif server is not None and method == "POST":
                status, headers_back, body_back = server.answer(dict(headers).get("mcp-session-id"), body)
            else:
                status, headers_back, body_back = None, [], b""
            run.http_requests.append(FakeRequest(method, url, headers + secrets, [h for h, _ in secrets], status, body))
            if status is None:
                raise fetch.FetchError(ErrorCode_HttpRequestDenied())
            for _, value in secrets:
                body_back = body_back.replace(value.encode(), b"[REDACTED]")
            return fetch.Response(status, headers_back, body_back)

        fakes = [
            (config, "get", self.config.get),
            (session, "history", lambda: list(self.history)),
            (session, "get", state.get),
            (session, "set", state.__setitem__),
            (session, "delete", lambda key: state.pop(key, None)),
            (output, "emit", run.events.append),
            (log, "write", lambda level, text: run.logs.append((level, text))),
            (log, "panicked", lambda text: setattr(run, "panic", text)),
            (llm, "complete", complete),
            (tool_activity, "called", lambda call: run.tool_reports.append(("called", call))),
            (tool_activity, "returned", lambda *result: run.tool_reports.append(("returned", *result))),
        ]
        if fetch is not None:
            fakes.append((fetch, "request", send))
        with ExitStack() as stack:
            for module, name, fake in fakes:
                stack.enter_context(mock.patch.object(module, name, fake))
            try:
                world.run(req)
            except Err as e:
                run.error = e.value
        if run.error is None:
            turn = [m for m in req.messages if m.role != types.Role.SYSTEM]
            self.history += turn + [message(types.Role.ASSISTANT, run.text())]
            self.state = state
        return run
