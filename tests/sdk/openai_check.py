"""Drive a running gateway with the official OpenAI Python SDK.

Usage: openai_check.py BASE_URL TOKEN. Exits non-zero with a message on the
first expectation that does not hold.
"""
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

reply = client.chat.completions.create(
    model="openclaw", messages=[{"role": "user", "content": "hi"}],
    extra_headers={"x-openclaw-agent-id": "main"},
)
assert reply.choices[0].message.content == "hi", reply
assert reply.choices[0].finish_reason == "stop", reply
assert reply.object == "chat.completion", reply

pieces = []
finish = None
for chunk in client.chat.completions.create(
    model="openclaw:main", messages=[{"role": "user", "content": "hello streaming world"}], stream=True,
):
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
assert "".join(pieces) == "hello streaming world", pieces
assert finish == "stop", finish

usage_seen = False
for chunk in client.chat.completions.create(
    model="openclaw", messages=[{"role": "user", "content": "u"}], stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage_seen = True
assert usage_seen

models = [m.id for m in client.models.list()]
assert "openclaw" in models and "openclaw/main" in models, models

try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("wrong key was accepted")
except openai.AuthenticationError:
    pass

try:
    client.chat.completions.create(model="openclaw:nobody", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("unknown agent was accepted")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e

print("openai sdk: all checks passed")
