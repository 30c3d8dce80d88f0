"""The OpenAI Agents SDK's OpenAIConversationsSession kept by wasmclaw's
Conversations API, the model served over the Responses API by the echo agent.

Usage: agents_conversations_check.py BASE_URL TOKEN.
"""
import asyncio
import sys

import openai
from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI

base_url, token = sys.argv[1], sys.argv[2]
set_tracing_disabled(True)


def texts(items):
    out = []
    for item in items:
        content = item["content"]
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        out.append((item["role"], text))
    return out


async def main():
    client = AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0)
    agent = Agent(name="echo", model=OpenAIResponsesModel(model="openclaw", openai_client=client))
    session = OpenAIConversationsSession(openai_client=client)

    first = await Runner.run(agent, "hello there", session=session)
    assert first.final_output == "hello there", first.final_output
    second = await Runner.run(agent, "and again", session=session)
    assert second.final_output == "and again", second.final_output

    # The session's history, as the SDK reads it back from the conversation.
    items = await session.get_items()
    assert texts(items) == [
        ("user", "hello there"),
        ("assistant", "hello there"),
        ("user", "and again"),
        ("assistant", "and again"),
    ], items
    assert texts(await session.get_items(limit=1)) == [("assistant", "and again")]
    conversation_id = session.session_id
    assert conversation_id.startswith("conv_"), conversation_id

    await session.clear_session()
    try:
        await client.conversations.retrieve(conversation_id)
        raise AssertionError("a cleared session's conversation still exists")
    except openai.NotFoundError:
        pass


asyncio.run(main())
print("all checks passed")
