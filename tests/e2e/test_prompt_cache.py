"""Prompt caching end to end: the simulated fleet keeps a prompt cache per
region; a repeated prefix behind a cache point is read from it, and the
cache counts reach boto3's and the Anthropic SDK's usage, the invocation
record and its cost."""

import anthropic
import pytest

from conftest import fleet_gateway, gw_client, invocation_record

LONG = "Answer in the house style, briefly, citing nothing. " * 80


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    # In-region claude-3-haiku in us-east-1 only: every request is processed
    # in the same region, so its cache is the one that matters.
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("cache"), """
[models.haiku]
model = "claude-3-haiku"
residency = ["us-east-1"]

[logging]
sink = "file"
file = "invocations.ndjson"
""")


def test_boto3_sees_cache_writes_then_reads_in_usage_records_and_cost(gw):
    rt = gw_client(gw)
    system = [{"text": LONG}, {"cachePoint": {"type": "default"}}]
    first = rt.converse(modelId="haiku", system=system, inferenceConfig={"maxTokens": 8},
                        messages=[{"role": "user", "content": [{"text": "first question"}]}])
    second = rt.converse(modelId="haiku", system=system, inferenceConfig={"maxTokens": 8},
                         messages=[{"role": "user", "content": [{"text": "second question"}]}])
    u1, u2 = first["usage"], second["usage"]
    assert u1["cacheWriteInputTokens"] > 100 and u1["cacheReadInputTokens"] == 0, u1
    assert u2["cacheReadInputTokens"] == u1["cacheWriteInputTokens"] and u2["cacheWriteInputTokens"] == 0, u2
    assert u2["inputTokens"] < 20, "cached tokens are not counted as input"

    r1 = invocation_record(gw, first["ResponseMetadata"]["RequestId"])
    r2 = invocation_record(gw, second["ResponseMetadata"]["RequestId"])
    assert r1["input"]["cacheWriteInputTokenCount"] == u1["cacheWriteInputTokens"]
    assert r2["input"]["cacheReadInputTokenCount"] == u2["cacheReadInputTokens"]
    # Reads cost a tenth of input, writes a quarter more: the second is far cheaper.
    c1, c2 = r1["meridian"]["estimatedCostUsd"], r2["meridian"]["estimatedCostUsd"]
    assert c2 < c1 / 5, (c1, c2)


def test_anthropic_cache_control_reports_cache_tokens(gw):
    client = anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0)
    system = [{"type": "text", "text": LONG + " (anthropic)", "cache_control": {"type": "ephemeral"}}]
    a = client.messages.create(model="haiku", max_tokens=8, system=system,
                               messages=[{"role": "user", "content": "one"}])
    b = client.messages.create(model="haiku", max_tokens=8, system=system,
                               messages=[{"role": "user", "content": "two"}])
    assert a.usage.cache_creation_input_tokens > 100 and a.usage.cache_read_input_tokens == 0
    assert b.usage.cache_read_input_tokens == a.usage.cache_creation_input_tokens
    assert b.usage.cache_creation.ephemeral_5m_input_tokens == 0
    with client.messages.stream(model="haiku", max_tokens=8, system=system,
                                messages=[{"role": "user", "content": "three"}]) as s:
        final = s.get_final_message()
    assert final.usage.cache_read_input_tokens == a.usage.cache_creation_input_tokens
