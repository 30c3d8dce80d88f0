"""fetch: GETs each URL in the message and answers with what came back.

A wasmclaw agent in Python (componentize-py) that calls out with the standard
`wasi:http/outgoing-handler` (see fetch.py). The gateway only lets through
what the agent's `http.allow` names; anything else comes back as an error the
agent reports in its answer, so one refused URL does not fail the run.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import output
from wit_world.imports.wasmclaw_agent_types import AgentError_Failed, AgentInfo, Event_Text, Role, RunRequest

import fetch

#: How much of a body the answer quotes.
MAX_QUOTE = 2000


class WitWorld(wit_world.WitWorld):
    def info(self) -> AgentInfo:
        return AgentInfo(name="fetch", version="0.1.0", description="GETs the URLs it is sent, through wasi:http")

    def run(self, req: RunRequest) -> None:
        text = next((m.content for m in reversed(req.messages) if m.role == Role.USER), "")
        urls = [word for word in text.split() if word.startswith(("http://", "https://"))]
        if not urls:
            say("Send me one or more http(s) URLs and I will fetch them.")
            return
        for url in urls:
            say(f"{url} -> {answer(url)}\n")


def answer(url: str) -> str:
    try:
        status, body = fetch.get(url)
    except fetch.FetchError as e:
        return f"error: {e}"
    quoted = body.decode("utf-8", errors="replace")
    if len(quoted) > MAX_QUOTE:
        quoted = quoted[:MAX_QUOTE] + "…"
    return f"{status} {quoted}"


def say(text: str) -> None:
    """Emit text; a closed client (or a full output limit) ends the run."""
    try:
        output.emit(Event_Text(text))
    except Err as e:
        raise Err(AgentError_Failed(str(e.value)))
