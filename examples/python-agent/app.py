"""calc: answers arithmetic itself and asks the model about everything else.

A wasmclaw agent in Python, built with componentize-py (see README.md):

- `calc: 6 * 7` is evaluated here (numbers, + - * / ** and parentheses) and the
  session keeps a count of calculations;
- any other message goes to the agent's model with the system prompt from
  config (`agents.entries.<id>.config.systemPrompt`) and the session's history,
  and the model's answer streams back as it comes;
- an exception (`calc: 1/0`) is reported as a panic: the gateway logs it with
  the run and request ids and the client learns what happened.
"""

import ast
import json
import operator
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, llm, log, output, session
from wit_world.imports.types import (
    AgentError_Failed,
    AgentError_Unavailable,
    AgentInfo,
    Event_Text,
    Message,
    Role,
    RunRequest,
)

OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


class WitWorld(wit_world.WitWorld):
    def info(self) -> AgentInfo:
        return AgentInfo(name="calc", version="0.1.0", description="Arithmetic here, everything else by the model")

    def run(self, req: RunRequest) -> None:
        try:
            answer(req)
        except Err:
            raise
        except Exception as e:
            at = traceback.extract_tb(e.__traceback__)[-1]
            log.panicked(f"{type(e).__name__}: {e} (at {at.filename}:{at.lineno})")
            raise


def answer(req: RunRequest) -> None:
    text = next((m.content for m in reversed(req.messages) if m.role == Role.USER), "")
    if text.startswith("calc:"):
        value = evaluate(ast.parse(text[len("calc:"):].strip(), mode="eval").body)
        stored = session.get("calculations")
        count = (json.loads(stored) if stored else 0) + 1
        keep(lambda: session.set("calculations", json.dumps(count).encode()))
        log.write(log.Level.DEBUG, f"calculation {count} of this session")
        say(format_number(value))
        return
    messages = [message(Role.SYSTEM, config.get("systemPrompt") or "You are a concise assistant.")]
    messages += session.history() + [message(Role.USER, text)]
    request = llm.CompletionRequest(messages=messages, tools=[], params=req.params, model=None)
    try:
        with llm.complete(request) as completion:
            while (event := completion.next()) is not None:
                keep(lambda: output.emit(event))
    except Err as e:
        if isinstance(e.value, llm.LlmError_RateLimited | llm.LlmError_Unavailable | llm.LlmError_Timeout
                      | llm.LlmError_Unauthorized | llm.LlmError_BadRequest):
            # The gateway tells the client what the provider did (429, 502, 504 …).
            raise Err(AgentError_Unavailable(f"the model failed: {e.value}"))
        raise


def evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](evaluate(node.operand))
    raise Err(AgentError_Failed("calc: only numbers, + - * / ** and parentheses"))


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def message(role: Role, content: str) -> Message:
    return Message(role=role, content=content, name=None, tool_call_id=None, tool_calls=[])


def say(text: str) -> None:
    keep(lambda: output.emit(Event_Text(text)))


def keep(call) -> None:
    """Run a gateway call whose error (a closed client, a state limit) ends the run."""
    try:
        call()
    except Err as e:
        raise Err(AgentError_Failed(str(e.value)))
