"""boto3 pointed straight at a region of `meridian sim`."""
import json

import botocore
import pytest

from conftest import sim_client, sim_records

SONNET_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU3 = "anthropic.claude-3-haiku-20240307-v1:0"
ANTHROPIC_BODY = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 60,
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "native hello"}]}]}


def test_converse(sim):
    c = sim_client(sim, "us-east-1")
    r = c.converse(modelId=SONNET_US, messages=[{"role": "user", "content": [{"text": "what is up"}]}],
                   inferenceConfig={"maxTokens": 100})
    text = r["output"]["message"]["content"][0]["text"]
    assert text.startswith("Simulated reply from us-")
    assert "You said: what is up" in text
    assert r["stopReason"] == "end_turn"
    assert r["usage"]["outputTokens"] == len(text.split())
    assert r["usage"]["totalTokens"] == r["usage"]["inputTokens"] + r["usage"]["outputTokens"]
    region = r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-sim-inference-region"]
    assert region in {"us-east-1", "us-east-2", "us-west-1", "us-west-2"}


def test_converse_stream(sim):
    c = sim_client(sim, "us-west-2")
    r = c.converse_stream(modelId=SONNET_US, messages=[{"role": "user", "content": [{"text": "stream it"}]}],
                          inferenceConfig={"maxTokens": 8})
    events = list(r["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text.startswith("Simulated reply from")
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 8


def test_invoke_model_anthropic(sim):
    c = sim_client(sim, "us-east-1")
    r = c.invoke_model(modelId=HAIKU3, body=json.dumps(ANTHROPIC_BODY))
    v = json.loads(r["body"].read())
    assert v["id"].startswith("msg_bdrk_") and v["type"] == "message"
    assert "You said: native hello" in v["content"][0]["text"]
    assert v["stop_reason"] == "end_turn"
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == v["usage"]["output_tokens"]


def test_invoke_model_with_response_stream(sim):
    c = sim_client(sim, "us-east-1")
    r = c.invoke_model_with_response_stream(modelId=HAIKU3, body=json.dumps(ANTHROPIC_BODY))
    assert r["contentType"] == "application/json"
    chunks = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
    types = [c["type"] for c in chunks]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert "You said: native hello" in text
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == len(text.split())


def test_bad_signature_is_refused(sim):
    import boto3
    c = boto3.client("bedrock-runtime", endpoint_url=sim["regions"]["us-east-1"]["url"], region_name="us-east-1",
                     aws_access_key_id=sim["credentials"]["access_key_id"], aws_secret_access_key="wrong",
                     config=botocore.config.Config(retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.converse(modelId=SONNET_US, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_profiles_process_inside_their_destination_set(sim):
    c = sim_client(sim, "eu-west-1")
    for i in range(6):
        c.converse(modelId="eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
                   messages=[{"role": "user", "content": [{"text": f"eu {i}"}]}], inferenceConfig={"maxTokens": 20})
    recs = [r for r in sim_records(sim)
            if r["endpoint_region"] == "eu-west-1" and r["operation"] == "Converse" and r["outcome"] == "success"]
    assert len(recs) >= 6
    assert all(r["inference_region"].startswith("eu-") for r in recs)


def test_control_plane_on_a_region(sim):
    b = sim_client(sim, "us-east-1", service="bedrock")
    ids = [p["inferenceProfileId"] for page in b.get_paginator("list_inference_profiles").paginate(
        typeEquals="SYSTEM_DEFINED", PaginationConfig={"PageSize": 4}) for p in page["inferenceProfileSummaries"]]
    assert SONNET_US in ids and len(ids) == len(set(ids))
    p = b.get_inference_profile(inferenceProfileIdentifier=SONNET_US)
    regions = sorted(m["modelArn"].split(":")[3] for m in p["models"])
    assert regions == ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]
