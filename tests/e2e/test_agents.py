"""The OpenAI Agents SDK (PyPI openai-agents, pinned) with its default
model interface — the Responses API — through `meridian serve`: a triage
agent hands off to an agent with one function tool, which calls it; every
model request goes through Meridian."""
import asyncio

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from conftest import sim_records


def test_an_agent_hands_off_and_the_next_agent_calls_its_function_tool(gateway, sim):
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=gateway["url"] + "/v1", api_key="unused", max_retries=0)
    model = OpenAIResponsesModel(model="chat", openai_client=client)
    asked = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"sunny in {city}"

    weather = Agent(name="Weather agent", instructions="Answer questions about the weather.",
                    tools=[get_weather], model=model)
    triage = Agent(name="Triage agent", instructions="Hand weather questions to the weather agent.",
                   handoffs=[weather], model=model)
    seen = len(sim_records(sim))
    result = asyncio.run(Runner.run(triage, "transfer_to_weather_agent, then use get_weather for Paris"))
    assert result.last_agent.name == "Weather agent", result
    assert asked == ["sim-city"], asked
    assert result.final_output.startswith("Simulated reply from ") and "sunny in sim-city" in result.final_output, \
        result.final_output
    # Three model requests (hand-off, tool call, answer), all through Meridian.
    calls = [r for r in sim_records(sim)[seen:] if r["outcome"] == "success"]
    assert len(calls) == 3, calls
