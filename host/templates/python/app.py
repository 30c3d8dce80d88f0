"""{{name}}: an agent for the wasmclaw gateway, in Python (componentize-py).

`python -m unittest test_app` runs test_app.py natively against a fake gateway
(wasmclaw_testing.py); `componentize-py -d wit -w agent componentize app -o
{{name}}.wasm` builds the component. README.md has the whole loop.
"""

import json
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, log, output, session
from wit_world.imports.types import AgentError_Failed, AgentInfo, Event_Text, Role, RunRequest


class WitWorld(wit_world.WitWorld):
    """The component's exports: `info` and `run`."""

    def info(self) -> AgentInfo:
        return AgentInfo(name="{{name}}", version="0.1.0", description="Repeats the last message, louder")

    def run(self, req: RunRequest) -> None:
        try:
            shout(req)
        except Err:
            raise  # an agent error: the client gets its status and message
        except Exception as e:
            # Anything else fails the run; the gateway logs this report with the
            # run and request ids and tells the client the agent panicked.
            at = traceback.extract_tb(e.__traceback__)[-1]
            log.panicked(f"{type(e).__name__}: {e} (at {at.filename}:{at.lineno})")
            raise


def shout(req: RunRequest) -> None:
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
    text = next((m.content for m in reversed(req.messages) if m.role == Role.USER), "")
    say(text.upper())
    say(suffix)


def say(text: str) -> None:
    """Stream a piece of the reply; stop quietly once the client is gone."""
    try:
        output.emit(Event_Text(text))
    except Err as e:
        raise Err(AgentError_Failed(f"output closed: {e.value}"))
