"""The official OpenAI Python SDK lists a stored response's input items.

Usage: responses_input_items.py BASE_URL TOKEN (against the echo agent).
`client.responses.input_items.list` pages as OpenAI does: newest first by
default, `limit`, `order`, `after`, and the SDK's auto-paging follows
`has_more` with `after=<last_id>`.
"""
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)

texts = ["one", "two", "three", "four", "five"]
response = client.responses.create(
    model="openclaw",
    input=[{"role": "user", "content": text} for text in texts],
)
assert response.output_text == "five", response.output_text

page = client.responses.input_items.list(response.id, limit=2)
assert [item.content[0].text for item in page.data] == ["five", "four"], page
assert page.has_more and page.first_id == page.data[0].id and page.last_id == page.data[1].id, page
assert all(item.type == "message" and item.role == "user" for item in page.data), page
assert all(item.content[0].type == "input_text" for item in page.data), page

# Auto-paging walks every page, two at a time.
every = [item.content[0].text for item in client.responses.input_items.list(response.id, limit=2)]
assert every == list(reversed(texts)), every

ascending = client.responses.input_items.list(response.id, order="asc", limit=3)
assert [item.content[0].text for item in ascending.data] == texts[:3], ascending
after = client.responses.input_items.list(response.id, order="asc", after=ascending.last_id)
assert [item.content[0].text for item in after.data] == texts[3:] and not after.has_more, after

# Someone else's id, or a bad parameter: the SDK's typed errors.
try:
    client.responses.input_items.list("resp_" + "0" * 32)
    raise AssertionError("an unknown response has no input items")
except openai.NotFoundError:
    pass
try:
    client.responses.input_items.list(response.id, order="sideways")
    raise AssertionError("order must be asc or desc")
except openai.BadRequestError as e:
    assert e.body["param"] == "order", e.body

print("all checks passed")
