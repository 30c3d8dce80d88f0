"""The official OpenAI Python SDK against the assistant agent and a mock provider.

Usage: assistant_check.py BASE_URL TOKEN. The Rust test scripted the mock's
replies in this order: three streamed tokens, an echo, a tool call, a final answer.
"""
import json
import sys
import time

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

# 1. Token-by-token streaming: each provider token is its own delta, as it arrives.
pieces, arrivals = [], []
stream = client.chat.completions.create(
    model="openclaw", messages=[{"role": "user", "content": "Say hello"}], stream=True, user="sdk-ada",
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
        arrivals.append(time.monotonic())
assert pieces == ["Hel", "lo", " world"], pieces
assert arrivals[-1] - arrivals[0] >= 0.2, f"deltas arrived together: {arrivals}"

# 2. The same user again: the gateway remembers the first turn (the Rust side checks the mock saw it).
again = client.chat.completions.create(
    model="openclaw", messages=[{"role": "user", "content": "What did I ask?"}], user="sdk-ada",
)
assert again.choices[0].message.content == "You said: What did I ask?", again
assert again.usage.prompt_tokens > 0, again.usage

# 3. The SDK's tool-calling loop: a tool call, the client runs it, then the final answer.
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
first = client.chat.completions.create(model="openclaw", messages=messages, tools=tools, user="sdk-tools")
choice = first.choices[0]
assert choice.finish_reason == "tool_calls", first
call = choice.message.tool_calls[0]
assert call.function.name == "get_weather", call
assert json.loads(call.function.arguments) == {"city": "Paris"}, call
messages.append(choice.message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
final = client.chat.completions.create(model="openclaw", messages=messages, tools=tools, user="sdk-tools")
assert final.choices[0].finish_reason == "stop", final
assert final.choices[0].message.content == "It is sunny in Paris.", final

print("all checks passed")
