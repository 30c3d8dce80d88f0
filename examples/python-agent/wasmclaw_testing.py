"""A fake wasmclaw gateway for unit tests, in plain Python.

The bindings componentize-py generates (`componentize-py -d wit -w agent
bindings .`) declare the gateway's functions; FakeHost.run replaces them for
the duration of one run with fakes that serve config values, session history
and state, and scripted model answers, and that record what the agent emitted
and logged. Like the gateway, a host keeps its session: a run that succeeds
adds its turn to the history and keeps its state writes; a failed one does not.
"""

from contextlib import ExitStack
from unittest import mock

from componentize_py_types import Err
from wit_world.imports import config, llm, log, output, session, types


class FakeRun:
    """What one run did."""

    def __init__(self):
        self.events = []  # every event emitted, in order
        self.logs = []  # (log.Level, message)
        self.llm_requests = []  # every llm.CompletionRequest
        self.error = None  # the AgentError the run failed with, if any
        self.panic = None  # what the agent reported with log.panicked

    def text(self) -> str:
        return "".join(e.value for e in self.events if isinstance(e, types.Event_Text))


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


class FakeHost:
    """A fake gateway for one agent's session."""

    def __init__(self, config=None, history=None, state=None):
        self.config = dict(config or {})
        self.history = list(history or [])
        self.state = dict(state or {})
        self.llm_answers = []  # lists of events, or an Err to fail `complete`

    def llm_reply(self, text: str) -> "FakeHost":
        """Script the model's next answer: `text` in one piece."""
        self.llm_answers.append([types.Event_Text(text)])
        return self

    def llm_error(self, error) -> "FakeHost":
        """Script the next model call to fail, e.g. `llm.LlmError_Timeout("slow")`."""
        self.llm_answers.append(Err(error))
        return self

    def request(self, message: str) -> types.RunRequest:
        """The request a client sending one user message would produce."""
        user = types.Message(role=types.Role.USER, content=message, name=None, tool_call_id=None, tool_calls=[])
        return types.RunRequest(
            run_id="test-run", agent_id="test", session_key="agent:test:unit",
            messages=[user], tools=[], user=None, params="{}",
        )

    def run(self, world, message: str) -> FakeRun:
        """Run `world` (your WitWorld) on one user message."""
        return self.run_request(world, self.request(message))

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

        fakes = [
            (config, "get", self.config.get),
            (session, "history", lambda: list(self.history)),
            (session, "get", state.get),
            (session, "set", state.__setitem__),
            (session, "delete", lambda key: state.pop(key, None)),
            (output, "emit", run.events.append),
            (log, "write", lambda level, message: run.logs.append((level, message))),
            (log, "panicked", lambda message: setattr(run, "panic", message)),
            (llm, "complete", complete),
        ]
        with ExitStack() as stack:
            for module, name, fake in fakes:
                stack.enter_context(mock.patch.object(module, name, fake))
            try:
                world.run(req)
            except Err as e:
                run.error = e.value
        if run.error is None:
            reply = types.Message(role=types.Role.ASSISTANT, content=run.text(), name=None, tool_call_id=None, tool_calls=[])
            self.history += [m for m in req.messages if m.role != types.Role.SYSTEM] + [reply]
            self.state = state
        return run
