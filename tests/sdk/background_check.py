"""The official OpenAI Python SDK's background responses.

Usage: background_check.py BASE_URL TOKEN. Agents: `main` echoes, `slow`
echoes one word at a time with a pause before each, `sleeper` never answers.
"""
import sys
import time

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)


def poll(response_id, done=("completed", "failed", "cancelled", "incomplete"), patience=60):
    deadline = time.monotonic() + patience
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in done:
            return response
        assert time.monotonic() < deadline, f"still {response.status} after {patience} s"
        time.sleep(0.2)


# 1. Create, answered at once, then poll until it has finished.
started = client.responses.create(model="openclaw", input="hello background", background=True)
assert started.status in ("queued", "in_progress"), started.status
assert started.background is True and started.id.startswith("resp_"), started
finished = poll(started.id)
assert finished.status == "completed" and finished.output_text == "hello background", finished
assert finished.background is True, finished

# 2. Background needs store, as on OpenAI.
try:
    client.responses.create(model="openclaw", input="x", background=True, store=False)
    raise AssertionError("background without store was accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "background", e.body

# 3. A streamed background response: hang up after the first words, then
#    resume after the last event seen; the run went on without the client.
words = "one two three four five six seven eight"
stream = client.responses.create(model="openclaw:slow", input=words, background=True, stream=True)
seen, text, response_id = -1, "", None
for event in stream:
    seen = event.sequence_number
    if event.type == "response.created":
        response_id = event.response.id
    if event.type == "response.output_text.delta":
        text += event.delta
        if len(text.split()) >= 2:
            break
stream.close()
assert response_id and text.startswith("one two"), (response_id, text)
resumed = client.responses.retrieve(response_id, stream=True, starting_after=seen)
numbers, completed = [], None
for event in resumed:
    numbers.append(event.sequence_number)
    if event.type == "response.output_text.delta":
        text += event.delta
    if event.type == "response.completed":
        completed = event.response
assert numbers == list(range(seen + 1, seen + 1 + len(numbers))), (seen, numbers)
assert completed is not None and completed.output_text == words, completed
assert text == words, text
assert client.responses.retrieve(response_id).status == "completed"

# 4. Cancel one that would never finish.
sleeper = client.responses.create(model="openclaw:sleeper", input="zzz", background=True)
assert sleeper.status in ("queued", "in_progress"), sleeper.status
cancelled = client.responses.cancel(sleeper.id)
assert cancelled.status == "cancelled", cancelled.status
assert client.responses.retrieve(sleeper.id).status == "cancelled"

print("all checks passed")
