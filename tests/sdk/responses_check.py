"""The official OpenAI Python SDK's Responses API against the echo agent.

Usage: responses_check.py BASE_URL TOKEN. Echo replies with the last user
message, prefixed with `[turn N] ` once its session has history, so the
prefix shows which earlier turns the agent saw.
"""
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

# 1. Plain: the response object as the SDK parses it.
first = client.responses.create(model="openclaw", input="hello there")
assert first.id.startswith("resp_"), first
assert first.object == "response" and first.status == "completed", first
assert first.output_text == "hello there", first
assert first.output[0].type == "message" and first.output[0].role == "assistant", first
assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens, first.usage
assert first.previous_response_id is None and first.error is None, first

# 2. Continuity: previous_response_id runs the next turn in the same conversation.
second = client.responses.create(model="openclaw", input="and again", previous_response_id=first.id)
assert second.output_text == "[turn 2] and again", second.output_text
assert second.previous_response_id == first.id, second

# 3. Streaming, continuing the same chain: the semantic events in order, numbered.
kinds, numbers, deltas, completed = [], [], [], None
stream = client.responses.create(
    model="openclaw", input=[{"role": "user", "content": [{"type": "input_text", "text": "one two three"}]}],
    previous_response_id=second.id, stream=True,
)
for event in stream:
    kinds.append(event.type)
    numbers.append(event.sequence_number)
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
    if event.type == "response.completed":
        completed = event.response
head = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
assert kinds[:4] == head and kinds[-4:] == tail, kinds
assert set(kinds[4:-4]) == {"response.output_text.delta"}, kinds
assert numbers == list(range(len(numbers))), numbers
assert "".join(deltas) == "[turn 3] one two three" and len(deltas) == 4, deltas
assert completed is not None and completed.output_text == "[turn 3] one two three", completed
assert completed.usage is not None, completed

# 4. Retrieve returns the stored object; delete removes it, and it cannot be continued.
again = client.responses.retrieve(completed.id)
assert again.output_text == completed.output_text and again.output[0].id == completed.output[0].id, again
client.responses.delete(first.id)
for attempt in (
    lambda: client.responses.retrieve(first.id),
    lambda: client.responses.delete(first.id),
    lambda: client.responses.create(model="openclaw", input="x", previous_response_id=first.id),
    lambda: client.responses.retrieve("resp_does_not_exist"),
):
    try:
        attempt()
        raise AssertionError("a deleted or unknown response answered")
    except openai.NotFoundError:
        pass
fourth = client.responses.create(model="openclaw", input="still here", previous_response_id=completed.id)
assert fourth.output_text == "[turn 4] still here", fourth.output_text

# 5. store=False: answered, never retrievable.
unkept = client.responses.create(model="openclaw", input="forget me", store=False)
assert unkept.output_text == "forget me", unkept
try:
    client.responses.retrieve(unkept.id)
    raise AssertionError("an unstored response was retrievable")
except openai.NotFoundError:
    pass

print("all checks passed")
