"""The OpenAI Agents SDK with its model served by wasmclaw over the Responses
API: one agent, one function tool, run plainly, streamed, and chained with
previous_response_id.

Usage: agents_check.py BASE_URL TOKEN. The Rust test scripted the mock
provider: a tool call and an answer for each of the three runs.
"""
import asyncio
import sys

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

base_url, token = sys.argv[1], sys.argv[2]
set_tracing_disabled(True)
calls = []


@function_tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    calls.append(city)
    return f"sunny in {city}"


async def main():
    client = AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0)
    agent = Agent(
        name="forecaster",
        instructions="Answer weather questions with the tool.",
        model=OpenAIResponsesModel(model="openclaw", openai_client=client),
        tools=[get_weather],
    )
    result = await Runner.run(agent, "What is the weather in Paris?")
    assert result.final_output == "It is sunny in Paris.", result.final_output
    assert calls == ["Paris"], calls

    streamed = Runner.run_streamed(agent, "And in Oslo?")
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "It is sunny in Oslo.", streamed.final_output
    assert calls == ["Paris", "Oslo"], calls

    # Chained by the server: after the call, only the tool's output is sent, with previous_response_id.
    chained = await Runner.run(agent, "And in Rome?", auto_previous_response_id=True)
    assert chained.final_output == "It is sunny in Rome.", chained.final_output
    assert calls == ["Paris", "Oslo", "Rome"], calls


asyncio.run(main())
print("all checks passed")
