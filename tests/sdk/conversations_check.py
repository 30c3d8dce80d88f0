"""The official OpenAI Python SDK's Conversations API against the echo agent.

Usage: conversations_check.py BASE_URL TOKEN. Echo replies with the last user
message, prefixed with `[turn N] ` once its session has history (N counts the
user messages the session holds, plus this one), so the prefix shows which
items reached the agent, and how often.
"""
import sys

import openai

base_url, token = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)


def texts(items):
    return [(i.role, "".join(p.text for p in i.content)) for i in items if i.type == "message"]


# 1. Create with a first item and metadata.
conv = client.conversations.create(
    items=[{"type": "message", "role": "user", "content": "remember the blue door"}],
    metadata={"topic": "doors"},
)
assert conv.id.startswith("conv_") and conv.object == "conversation", conv
assert conv.metadata == {"topic": "doors"}, conv
assert client.conversations.retrieve(conv.id).id == conv.id

# 2. A response in the conversation: the added item reached the agent before
#    the input (the next turn counts both), and the response names it.
first = client.responses.create(model="openclaw", input="first question", conversation=conv.id)
assert first.output_text == "first question", first.output_text
assert first.conversation is not None and first.conversation.id == conv.id, first.conversation
second = client.responses.create(model="openclaw", input="second", conversation={"id": conv.id})
assert second.output_text == "[turn 3] second", second.output_text

# 3. Items added later go to the next response once, in order.
added = client.conversations.items.create(conv.id, items=[{"role": "user", "content": "added later"}])
assert [i.role for i in added.data] == ["user"] and added.data[0].id.startswith("msg_"), added
third = client.responses.create(model="openclaw", input="third", conversation=conv.id)
assert third.output_text == "[turn 4] third", third.output_text

# 4. Streaming in a conversation records it too.
with client.responses.stream(model="openclaw", input="fourth", conversation=conv.id) as stream:
    for _ in stream:
        pass
    streamed = stream.get_final_response()
assert streamed.output_text == "[turn 6] fourth", streamed.output_text

# 5. The items, oldest first (auto-paging through `after`), and newest first by default.
everything = list(client.conversations.items.list(conv.id, order="asc", limit=3))
assert texts(everything) == [
    ("user", "remember the blue door"),
    ("user", "first question"),
    ("assistant", "first question"),
    ("user", "second"),
    ("assistant", "[turn 3] second"),
    ("user", "added later"),
    ("user", "third"),
    ("assistant", "[turn 4] third"),
    ("user", "fourth"),
    ("assistant", "[turn 6] fourth"),
], texts(everything)
assert everything[2].id == first.output[0].id, "output items keep their ids"
page = client.conversations.items.list(conv.id, limit=2)
assert texts(page.data) == [("assistant", "[turn 6] fourth"), ("user", "fourth")], texts(page.data)
assert page.has_more and page.last_id == page.data[-1].id, page
older = client.conversations.items.list(conv.id, limit=2, after=page.last_id)
assert texts(older.data) == [("assistant", "[turn 4] third"), ("user", "third")], texts(older.data)

# 6. Metadata is replaced by an update.
updated = client.conversations.update(conv.id, metadata={"topic": "windows"})
assert updated.metadata == {"topic": "windows"}, updated
assert client.conversations.retrieve(conv.id).metadata == {"topic": "windows"}

# 7. Delete: gone for every call, and a response cannot run in it.
deleted = client.conversations.delete(conv.id)
assert deleted.deleted and deleted.id == conv.id, deleted
for call in (
    lambda: client.conversations.retrieve(conv.id),
    lambda: client.conversations.items.list(conv.id),
    lambda: client.responses.create(model="openclaw", input="x", conversation=conv.id),
):
    try:
        call()
        raise AssertionError("a deleted conversation answered")
    except openai.NotFoundError:
        pass

print("all checks passed")
