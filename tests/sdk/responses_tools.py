"""A function tool round over the Responses API, through the assistant agent
and a mock provider (the Rust test scripted: a tool call, then an answer).

Usage: responses_tools.py BASE_URL TOKEN
"""
import json
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]

# The model's call reaches the client as a streamed function_call item.
kinds, arguments, call_response = [], [], None
stream = client.responses.create(
    model="openclaw", input="What is the weather in Paris?", tools=tools, instructions="Use tools.", stream=True,
)
for event in stream:
    kinds.append(event.type)
    if event.type == "response.function_call_arguments.delta":
        arguments.append(event.delta)
    if event.type == "response.completed":
        call_response = event.response
assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"], kinds
assert kinds[-4:] == [
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.output_item.done", "response.completed",
], kinds
call = call_response.output[0]
assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_w1", call
assert json.loads(call.arguments) == {"city": "Paris"} and "".join(arguments) == call.arguments, call

# The client runs the tool and continues the turn with its output.
final = client.responses.create(
    model="openclaw", previous_response_id=call_response.id, tools=tools,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
)
assert final.output_text == "It is sunny in Paris.", final
assert final.status == "completed" and final.usage.input_tokens > 0, final

print("all checks passed")
