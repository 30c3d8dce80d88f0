"""The OpenAI Agents SDK with its model served by wasmclaw over the Responses
API: one agent, one function tool, run plainly and streamed.

Usage: agents_check.py BASE_URL TOKEN. The Rust test scripted the mock
provider: a tool call and an answer for each of the two runs.
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


asyncio.run(main())
print("all checks passed")
