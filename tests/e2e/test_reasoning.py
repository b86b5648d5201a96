"""Reasoning and structured output end to end. The fleet opens a thinking
reply with a signed reasoning block and refuses a replayed block whose text
or signature changed, as Bedrock does — so these tests fail if Meridian
alters thinking on its way through any front door, or across a failover."""
import json

import anthropic
import openai
import pytest
from botocore.exceptions import ClientError

from conftest import fleet_gateway, gw_client, put_faults

THINK = {"type": "enabled", "budget_tokens": 1024}
Q = "why is the sky blue"


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("reasoning"), """
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"

[models.old]
model = "claude-3-haiku"
""")


def claude(gw):
    return anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0, timeout=30)


def oai(gw):
    return openai.OpenAI(base_url=gw["url"] + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_anthropic_thinking_streams_with_signatures_and_round_trips_across_a_failover(sim, gw):
    c = claude(gw)
    deltas = []
    with c.messages.stream(model="chat", max_tokens=2048, thinking=THINK,
                           messages=[{"role": "user", "content": Q}]) as s:
        for event in s:
            if event.type == "content_block_delta":
                deltas.append(event.delta.type)
        first = s.get_final_message()
        region = s.response.headers["x-meridian-region"]
    assert "thinking_delta" in deltas and "signature_delta" in deltas, deltas
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    assert first.content[-1].type == "text"

    history = [{"role": "user", "content": Q},
               {"role": "assistant", "content": [b.model_dump() for b in first.content]},
               {"role": "user", "content": "and at sunset?"}]
    # The region that thought it goes down: the next turn is served elsewhere
    # and its signature still holds.
    put_faults(sim, region, {"outage": True})
    try:
        r = c.messages.with_raw_response.create(model="chat", max_tokens=2048, thinking=THINK, messages=history)
    finally:
        put_faults(sim, region, {})
    assert r.headers["x-meridian-region"] != region
    second = r.parse()
    assert second.content[0].type == "thinking" and second.content[-1].type == "text"

    # A thinking block changed on the way is refused: the check above can fail.
    tampered = json.loads(json.dumps(history))
    tampered[1]["content"][0]["thinking"] += " (edited)"
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="chat", max_tokens=2048, thinking=THINK, messages=tampered)
    assert "signature" in e.value.body["error"]["message"]


def test_converse_reasoning_content_round_trips_unary_and_streamed(gw):
    rt = gw_client(gw)
    fields = {"thinking": THINK}
    first = rt.converse(modelId="chat", messages=[{"role": "user", "content": [{"text": Q}]}],
                        inferenceConfig={"maxTokens": 2048}, additionalModelRequestFields=fields)
    blocks = first["output"]["message"]["content"]
    reasoning = blocks[0]["reasoningContent"]["reasoningText"]
    assert reasoning["text"] and reasoning["signature"]

    # Streamed: reasoning text deltas, then its signature, reassembled by the client.
    ev = rt.converse_stream(modelId="chat", messages=[{"role": "user", "content": [{"text": Q}]}],
                            inferenceConfig={"maxTokens": 2048}, additionalModelRequestFields=fields)
    text, signature = "", None
    for e in ev["stream"]:
        r = e.get("contentBlockDelta", {}).get("delta", {}).get("reasoningContent")
        if r:
            text += r.get("text", "")
            signature = r.get("signature", signature)
    assert text and signature

    turn = [{"role": "user", "content": [{"text": Q}]},
            {"role": "assistant", "content": [{"reasoningContent": {"reasoningText": {"text": text, "signature": signature}}},
                                              {"text": "Rayleigh scattering."}]},
            {"role": "user", "content": [{"text": "and at sunset?"}]}]
    again = rt.converse(modelId="chat", messages=turn, inferenceConfig={"maxTokens": 2048},
                        additionalModelRequestFields=fields)
    assert "reasoningContent" in again["output"]["message"]["content"][0]
    turn[1]["content"][0]["reasoningContent"]["reasoningText"]["signature"] = "forged"
    with pytest.raises(ClientError) as e:
        rt.converse(modelId="chat", messages=turn, inferenceConfig={"maxTokens": 2048},
                    additionalModelRequestFields=fields)
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_openai_reasoning_effort_reports_reasoning_tokens(gw):
    r = oai(gw).chat.completions.create(model="chat", max_completion_tokens=64, reasoning_effort="low",
                                        messages=[{"role": "user", "content": Q}])
    msg = r.choices[0].message
    assert msg.content and "You said: why is the sky blue" in msg.content
    assert (msg.model_extra or {}).get("reasoning_content", "").startswith("Thinking it over")
    details = r.usage.completion_tokens_details
    assert details.reasoning_tokens > 0 and details.reasoning_tokens < r.usage.completion_tokens

    chunks = list(oai(gw).chat.completions.create(
        model="chat", max_completion_tokens=64, reasoning_effort="medium", stream=True,
        stream_options={"include_usage": True}, messages=[{"role": "user", "content": Q}]))
    thought = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    assert thought.startswith("Thinking it over")
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens > 0

    with pytest.raises(openai.BadRequestError) as e:
        oai(gw).chat.completions.create(model="old", reasoning_effort="high",
                                        messages=[{"role": "user", "content": Q}])
    assert e.value.body["param"] == "reasoning_effort"


def test_openai_response_format_maps_to_structured_output(gw):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    r = oai(gw).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "biggest city in France, as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}})
    v = json.loads(r.choices[0].message.content)
    assert set(v) == {"city", "population"} and isinstance(v["population"], int), v

    r = oai(gw).chat.completions.create(model="chat", response_format={"type": "json_object"},
                                        messages=[{"role": "user", "content": "any JSON object"}])
    assert isinstance(json.loads(r.choices[0].message.content), dict)

    with pytest.raises(openai.BadRequestError) as e:
        oai(gw).chat.completions.create(model="old", response_format={"type": "json_object"},
                                        messages=[{"role": "user", "content": "x"}])
    assert e.value.body["param"] == "response_format"
