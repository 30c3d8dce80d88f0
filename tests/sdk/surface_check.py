"""The chat surface of issue 17 through the official OpenAI Python SDK:
legacy completions (plain and streamed), models.retrieve, and chat
completions with every parameter, n, prefixes, empty headers and the
x-openclaw-model header.

Usage: surface_check.py BASE_URL TOKEN, against a gateway whose `main` and
`free` agents are the assistant on the mock provider (only `free` allows a
model override) and whose `echo` agent is the echo plugin. The Rust side
checks what the mock provider received, in the order of the calls here.
"""
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

# Legacy completions, plain and streamed.
done = client.completions.create(model="openclaw:echo", prompt="say this")
assert done.object == "text_completion", done
assert done.choices[0].text == "say this", done
assert done.choices[0].finish_reason == "stop", done
assert done.usage is not None and done.usage.total_tokens >= 0, done

pieces, finish = [], None
for chunk in client.completions.create(model="OpenClaw:echo", prompt=["streamed legacy text"], stream=True):
    assert chunk.object == "text_completion", chunk
    if chunk.choices:
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
assert "".join(pieces) == "streamed legacy text", pieces
assert finish == "stop", finish

try:
    client.completions.create(model="openclaw:echo", prompt=["one", "two"])
    raise SystemExit("two prompts were accepted")
except openai.BadRequestError as e:
    assert e.param == "prompt", e

# models.retrieve
assert client.models.retrieve("openclaw").id == "openclaw"
echo = client.models.retrieve("openclaw/echo")
assert (echo.id, echo.object, echo.owned_by) == ("openclaw/echo", "model", "wasmclaw"), echo
try:
    client.models.retrieve("openclaw/nobody")
    raise SystemExit("an unknown model was retrieved")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e

# Mock call 1: every parameter, as the SDK sends it, reaches the provider.
reply = client.chat.completions.create(
    model="openclaw",
    messages=[{"role": "user", "content": "params"}],
    max_completion_tokens=7,
    presence_penalty=0.5,
    frequency_penalty=-0.25,
    logit_bias={"50256": -100},
    logprobs=True,
    top_logprobs=2,
    reasoning_effort="low",
    metadata={"team": "qa"},
    extra_body={"a_parameter_from_next_year": {"deep": [1, "two"]}},
)
assert reply.choices[0].message.content == "You said: params", reply

# n > 1 is refused, never answered with one choice.
try:
    client.chat.completions.create(model="openclaw:echo", messages=[{"role": "user", "content": "hi"}], n=2)
    raise SystemExit("n=2 was accepted")
except openai.BadRequestError as e:
    assert e.param == "n", e

# Prefixes in any case; empty routing and session headers count as absent.
reply = client.chat.completions.create(
    model="Agent:ECHO", messages=[{"role": "user", "content": "routed"}],
    extra_headers={"x-openclaw-agent-id": "", "x-openclaw-session-key": ""},
)
assert reply.choices[0].message.content == "routed", reply

# Mock call 2: a per-request model for an agent that allows it.
reply = client.chat.completions.create(
    model="openclaw:free", messages=[{"role": "user", "content": "bigger"}],
    extra_headers={"x-openclaw-model": "large"},
)
assert reply.choices[0].message.content == "You said: bigger", reply

# Refused for an agent that does not; nothing reaches the provider.
try:
    client.chat.completions.create(
        model="openclaw:main", messages=[{"role": "user", "content": "no"}],
        extra_headers={"x-openclaw-model": "large"},
    )
    raise SystemExit("a model override was accepted for main")
except openai.BadRequestError as e:
    assert "allowModelOverride" in str(e), e

print("surface: all checks passed")
