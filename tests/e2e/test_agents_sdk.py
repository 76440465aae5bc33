"""The openai-agents SDK through the real proxy: a tool loop chained with `auto_previous_response_id`
(follow-ups carry only the tool output), and an `OpenAIConversationsSession` (the Conversations API)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import CLIENT_KEY
from tests.e2e.test_conversation_state import texts
from tests.fakes.codex_backend import sse, turn
from tests.proxyproc import Proxy

agents = pytest.importorskip("agents")
from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

set_tracing_disabled(True)  # traces would go to OpenAI


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def agent(proxy: Proxy) -> tuple[Agent, AsyncOpenAI]:
    client = AsyncOpenAI(base_url=proxy.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    return Agent(
        name="helper", instructions="Be brief.", tools=[get_weather], model=OpenAIResponsesModel(model="gpt-5.5", openai_client=client)
    ), client


def test_tool_loop_with_auto_previous_response_id(proxy: Proxy, backend):
    backend.replies.append(sse(turn().reasoning("Look it up.").tool_call("get_weather", {"city": "Paris"}, call_id="call_a1").events()))
    backend.replies.append(sse(turn().text("It is sunny in Paris.").events()))
    helper, _ = agent(proxy)
    result = asyncio.run(Runner.run(helper, "Weather in Paris?", auto_previous_response_id=True))
    assert result.final_output == "It is sunny in Paris."
    second = backend.received[-1].json
    assert texts(second["input"]) == ["Weather in Paris?", "reasoning", "function_call", "function_call_output"]
    assert second["input"][3] == {"type": "function_call_output", "call_id": "call_a1", "output": "sunny in Paris"}
    assert second["instructions"] == "Be brief."


def test_conversations_session_keeps_the_history(proxy: Proxy, backend):
    helper, client = agent(proxy)

    async def two_runs() -> tuple[str, list]:
        session = OpenAIConversationsSession(openai_client=client)
        await Runner.run(helper, "I am Ada.", session=session)
        second = await Runner.run(helper, "Who am I?", session=session)
        return second.final_output, await session.get_items()

    answer, items = asyncio.run(two_runs())
    assert answer == "You said: Who am I?"
    sent = backend.received[-1].json["input"]
    assert texts(sent) == ["I am Ada.", "reasoning", "message", "Who am I?"]
    assert not any(str(i.get("id", "")).startswith(("msg_cp", "fco_cp")) for i in sent)  # cliproxy's own ids stay home
    assert [i.get("role") or i.get("type") for i in items] == ["user", "reasoning", "assistant", "user", "reasoning", "assistant"]
