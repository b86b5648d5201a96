"""Service tiers end to end: boto3's `serviceTier` (Converse) and
`X-Amzn-Bedrock-Service-Tier` (InvokeModel) reach the fleet; a model
configured `service_tiers = ["flex", "default"]` is tried on Flex first and
falls back to the standard tier when Flex is throttled; a tier the model
does not offer gets Bedrock's ValidationException; cost follows the tier."""
import json

import pytest
from botocore.exceptions import ClientError

from conftest import fleet_gateway, gw_client, invocation_record, put_faults, sim_records

ASK = [{"role": "user", "content": [{"text": "tiers please"}]}]


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    # nova-lite on demand in us-east-1 only: one region, so each tier is one candidate.
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("tiers"), """
[models.nova]
model = "nova-lite"
residency = ["us-east-1"]

[models.nova-flex]
model = "nova-lite"
residency = ["us-east-1"]
service_tiers = ["flex", "default"]

[models.haiku]
model = "claude-3-haiku"
residency = ["us-east-1"]

[logging]
sink = "file"
file = "invocations.ndjson"
""")


def fleet_since(sim, seq):
    return [r for r in sim_records(sim) if r["seq"] > seq]


def last_seq(sim):
    return max((r["seq"] for r in sim_records(sim)), default=-1)


def test_boto3_service_tier_reaches_the_fleet_and_prices_the_answer(sim, gw):
    rt = gw_client(gw)
    mark = last_seq(sim)
    std = rt.converse(modelId="nova", messages=ASK, inferenceConfig={"maxTokens": 16})
    pri = rt.converse(modelId="nova", messages=ASK, inferenceConfig={"maxTokens": 16},
                      serviceTier={"type": "priority"})
    assert pri["serviceTier"] == {"type": "priority"}, pri.get("serviceTier")
    assert "serviceTier" not in std
    tiers = [r.get("service_tier") for r in fleet_since(sim, mark)]
    assert tiers == [None, "priority"], tiers

    r_std = invocation_record(gw, std["ResponseMetadata"]["RequestId"])["meridian"]
    r_pri = invocation_record(gw, pri["ResponseMetadata"]["RequestId"])["meridian"]
    assert r_pri["serviceTier"] == "priority" and "serviceTier" not in r_std
    per_token = lambda r, u: r["estimatedCostUsd"] / (u["inputTokens"] + 4 * u["outputTokens"])  # noqa: E731
    ratio = per_token(r_pri, pri["usage"]) / per_token(r_std, std["usage"])
    assert 1.6 < ratio < 1.9, f"priority costs 1.75x the standard price: {ratio}"

    # InvokeModel carries the tier in a header, both ways.
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "native"}]}],
                       "inferenceConfig": {"maxTokens": 8}})
    mark = last_seq(sim)
    inv = rt.invoke_model(modelId="nova", body=body, serviceTier="flex")
    assert inv["serviceTier"] == "flex", inv.keys()
    assert [r.get("service_tier") for r in fleet_since(sim, mark)] == ["flex"]


def test_a_tier_the_model_does_not_offer_is_a_validation_exception(gw):
    rt = gw_client(gw)
    with pytest.raises(ClientError) as e:
        rt.converse(modelId="haiku", messages=ASK, serviceTier={"type": "flex"})
    err = e.value.response["Error"]
    assert err["Code"] == "ValidationException", err
    assert "flex" in err["Message"], err
    with pytest.raises(ClientError) as e:
        rt.converse(modelId="nova", messages=ASK, serviceTier={"type": "reserved"})
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_flex_first_falls_back_to_the_standard_tier_when_flex_is_throttled(sim, gw):
    rt = gw_client(gw)
    mark = last_seq(sim)
    cheap = rt.converse(modelId="nova-flex", messages=ASK, inferenceConfig={"maxTokens": 16})
    assert cheap["serviceTier"] == {"type": "flex"}, "Flex first, and it had room"
    rec = invocation_record(gw, cheap["ResponseMetadata"]["RequestId"])["meridian"]
    assert rec["serviceTier"] == "flex"
    put_faults(sim, "us-east-1", {"flex_throttled": True})
    try:
        mark = last_seq(sim)
        out = rt.converse(modelId="nova-flex", messages=ASK, inferenceConfig={"maxTokens": 16})
    finally:
        put_faults(sim, "us-east-1", {})
    assert out["serviceTier"] == {"type": "default"}, out.get("serviceTier")
    seen = [(r["service_tier"], r["outcome"]) for r in fleet_since(sim, mark)]
    assert seen == [("flex", "ThrottlingException"), ("default", "success")], seen
    rec = invocation_record(gw, out["ResponseMetadata"]["RequestId"])["meridian"]
    assert rec["serviceTier"] == "default"
    outcomes = [a["outcome"] for a in rec["decision"]["attempts"]]
    assert outcomes[0] == "throttled" and outcomes[-1] == "success", rec["decision"]
