"""{{name}}: an agent for the wasmclaw gateway, in Python (componentize-py).

- `ask: QUESTION` asks the agent's model (`llm`, with `config.systemPrompt`
  and the session's history) and streams its answer;
- `fetch: URL` GETs the URL through the gateway (`fetch.py`, `wasi:http`:
  only what the agent's `http.allow` names) and quotes the answer;
- `tool: NAME {"arg": …}` calls tool NAME of the MCP server at
  `config.mcpServer` (`mcp.py`, through the gateway like `fetch:`);
- anything else is repeated, louder, with the configured suffix.

`python -m unittest test_app` runs test_app.py natively against a fake gateway
(wasmclaw_testing.py); `componentize-py -d wit -w agent componentize app -o
{{name}}.wasm` builds the component. README.md has the whole loop.
"""

import json
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, llm, log, output, session
from wit_world.imports.wasmclaw_agent_types import (
    AgentError_Failed,
    AgentError_Unavailable,
    AgentInfo,
    ContentPart_Text,
    Event_Text,
    Message,
    Role,
    RunRequest,
)

import fetch
import mcp

#: How much of a fetched body the answer quotes.
MAX_QUOTE = 500
#: What `info()` tells the gateway (and `GET /admin/agents`) this agent does.
DESCRIPTION = "Shouts back, asks the model (ask:), fetches a URL (fetch:) or calls an MCP tool (tool:)"


class WitWorld(wit_world.WitWorld):
    """The component's exports: `info` and `run`."""

    def info(self) -> AgentInfo:
        return AgentInfo(
            name="{{name}}", version="0.1.0", description=DESCRIPTION
        )

    def run(self, req: RunRequest) -> None:
        try:
            answer(req)
        except Err:
            raise  # an agent error: the client gets its status and message
        except Exception as e:
            # Anything else fails the run; the gateway logs this report with the
            # run and request ids and tells the client the agent panicked.
            at = traceback.extract_tb(e.__traceback__)[-1]
            log.panicked(f"{type(e).__name__}: {e} (at {at.filename}:{at.lineno})")
            raise


def answer(req: RunRequest) -> None:
    last = next((m for m in reversed(req.messages) if m.role == Role.USER), None)
    text = text_of(last) if last else ""
    if text.startswith("ask:"):
        ask(text[len("ask:"):].strip(), req.params)
    elif text.startswith("fetch:"):
        url = text[len("fetch:"):].strip()
        try:
            status, body = fetch.get(url)
            say(f"{status} {body.decode('utf-8', errors='replace')[:MAX_QUOTE]}")
        except (fetch.FetchError, ValueError) as e:  # refused or failed, or not an http(s) URL
            say(f"cannot fetch {url}: {e}")
    elif text.startswith("tool:"):
        call_tool(text[len("tool:"):].strip())
    else:
        shout(text)


def ask(question: str, params: str) -> None:
    """Stream the model's answer to `question`, with the system prompt and the session's history."""
    system = config.get("systemPrompt")
    messages = ([message(Role.SYSTEM, system)] if system else []) + session.history() + [message(Role.USER, question)]
    request = llm.CompletionRequest(messages=messages, tools=[], params=params, model=None)
    try:
        with llm.complete(request) as completion:
            while (event := completion.next()) is not None:
                emit(event)
    except Err as e:
        if isinstance(e.value, llm.LlmError_RateLimited | llm.LlmError_Unavailable | llm.LlmError_Timeout
                      | llm.LlmError_Unauthorized | llm.LlmError_BadRequest):
            # The gateway tells the client what the provider did (429, 502, 504 …).
            raise Err(AgentError_Unavailable(f"the model failed: {e.value}"))
        raise


def call_tool(command: str) -> None:
    """`NAME {"arg": …}`: call tool NAME of the MCP server at `config.mcpServer`, quote its answer."""
    name, _, arguments = command.partition(" ")
    server = config.get("mcpServer")
    if not server:
        say("no MCP server: set config.mcpServer to its URL (and put that URL in http.allow)")
        return
    try:
        arguments = json.loads(arguments or "{}")
    except ValueError as e:
        say(f"the arguments of {name} are not JSON: {e}")
        return
    try:
        result = mcp.McpClient.connect(server).call_tool(name, arguments)
    except mcp.McpError as e:
        say(f"cannot call {name}: {e}")
    else:
        say(f"{name} failed: {result.text}" if result.is_error else result.text)


def shout(text: str) -> None:
    # Settings from the gateway config (`agents.entries.<id>.config`, or `--set suffix=…`).
    suffix = config.get("suffix") or "!"
    # State kept per session, saved only when the run succeeds.
    stored = session.get("turns")
    turns = (json.loads(stored) if stored else 0) + 1
    try:
        session.set("turns", json.dumps(turns).encode())
    except Err as e:
        raise Err(AgentError_Failed(f"cannot keep the turn count: {e.value}"))
    log.write(log.Level.INFO, f"turn {turns} of this session")
    say(text.upper())
    say(suffix)


def text_of(m: Message) -> str:
    """A message's text parts, joined (images, audio and files left out)."""
    return "\n".join(part.value for part in m.content if isinstance(part, ContentPart_Text))


def message(role: Role, text: str) -> Message:
    return Message(role=role, content=[ContentPart_Text(text)], name=None, tool_call_id=None, tool_calls=[])


def say(text: str) -> None:
    emit(Event_Text(text))


def emit(event) -> None:
    """Stream a piece of the reply; stop quietly once the client is gone."""
    try:
        output.emit(event)
    except Err as e:
        raise Err(AgentError_Failed(f"output closed: {e.value}"))
