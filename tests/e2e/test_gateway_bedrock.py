"""Unmodified boto3 against `meridian serve`: Bedrock Runtime, control plane,
errors, and honest streaming failure."""
import json
import urllib.error
import urllib.request

import botocore
import pytest

from conftest import NO_VALIDATION, gw_client, put_faults, sim_records

APP_PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"


def msg(text):
    return [{"role": "user", "content": [{"text": text}]}]


def test_zero_config_serve_answers_converse(zero_config_gateway):
    c = gw_client(zero_config_gateway)
    r = c.converse(modelId="claude-sonnet-4-5", messages=msg("zero config"), inferenceConfig={"maxTokens": 50})
    assert "You said: zero config" in r["output"]["message"]["content"][0]["text"]
    assert r["usage"]["outputTokens"] > 0 and r["stopReason"] == "end_turn"
    status = json.loads(urllib.request.urlopen(zero_config_gateway["url"] + "/status", timeout=5).read())
    assert status["upstream"]["mode"] == "simulated"
    assert status["region"] == "us-east-1" and status["region_source"] == "fallback"
    assert "SIMULATED BEDROCK" in zero_config_gateway["proc"].output()


def test_a_gateway_that_fell_back_to_the_fleet_is_never_ready(zero_config_gateway):
    """`auto` without credentials serves the fleet (zero config is useful) but
    `/ready` and `meridian_ready` say no: behind a load balancer it takes no traffic."""
    try:
        urllib.request.urlopen(zero_config_gateway["url"] + "/ready", timeout=5)
        raise AssertionError("/ready answered 200 while serving the simulator by fallback")
    except urllib.error.HTTPError as e:
        assert e.code == 503
        body = json.loads(e.read())
    assert body["ready"] is False and "fell back to the simulated fleet" in body["upstream"], body
    metrics = urllib.request.urlopen(zero_config_gateway["url"] + "/metrics", timeout=5).read().decode()
    assert "\nmeridian_ready 0\n" in metrics
    status = json.loads(urllib.request.urlopen(zero_config_gateway["url"] + "/status", timeout=5).read())
    assert status["upstream"]["fallback"] is True and status["ready"] is False


def test_converse_through_the_gateway(gateway, sim):
    status = json.loads(urllib.request.urlopen(gateway["url"] + "/status", timeout=5).read())
    assert status["upstream"] == {"mode": "aws", "detail": "Amazon Bedrock, credentials from AWS profile 'fleet'",
                                  "fallback": False}
    c = gw_client(gateway)
    r = c.converse(modelId="chat", messages=msg("through meridian"), inferenceConfig={"maxTokens": 80},
                   additionalModelRequestFields={"top_k": 5})
    text = r["output"]["message"]["content"][0]["text"]
    assert "You said: through meridian" in text
    assert r["usage"]["outputTokens"] == len(text.split())
    h = r["ResponseMetadata"]["HTTPHeaders"]
    assert h["x-meridian-region"] in {"us-east-1", "us-east-2", "us-west-1", "us-west-2"}
    assert h["x-meridian-attempts"] == "1"
    rec = [x for x in sim_records(sim) if x["request_id"] == h["x-meridian-upstream-request-id"]]
    assert rec and rec[0]["model_id"] == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert rec[0]["inference_region"] == h["x-meridian-region"]


def test_converse_stream_through_the_gateway(gateway):
    c = gw_client(gateway)
    r = c.converse_stream(modelId="chat", messages=msg("stream through"), inferenceConfig={"maxTokens": 12})
    events = list(r["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text.startswith("Simulated reply from")
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 12


def test_tool_use_round_trip(gateway):
    c = gw_client(gateway)
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "description": "weather",
                                     "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                              "required": ["city"]}}}}]}
    r = c.converse(modelId="chat", messages=msg("use get_weather for Paris"), toolConfig=tools)
    assert r["stopReason"] == "tool_use"
    use = next(b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b)
    assert use["name"] == "get_weather" and use["input"] == {"city": "sim-city"}
    follow = msg("use get_weather for Paris") + [r["output"]["message"], {"role": "user", "content": [
        {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "21 degrees"}]}}]}]
    r2 = c.converse(modelId="chat", messages=follow, toolConfig=tools)
    assert r2["stopReason"] == "end_turn"
    assert "Tool result: 21 degrees" in r2["output"]["message"]["content"][0]["text"]


def test_invoke_and_invoke_stream_through_the_gateway(gateway):
    c = gw_client(gateway)
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 40,
                       "messages": [{"role": "user", "content": "native via gateway"}]})
    r = c.invoke_model(modelId="haiku", body=body, contentType="application/json", accept="application/json")
    v = json.loads(r["body"].read())
    assert "You said: native via gateway" in v["content"][0]["text"]
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"] == str(v["usage"]["output_tokens"])
    r = c.invoke_model_with_response_stream(modelId="haiku", body=body)
    assert r["contentType"] == "application/json"
    chunks = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
    assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop"


def test_count_tokens(gateway):
    c = gw_client(gateway)
    r = c.count_tokens(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                       input={"converse": {"messages": msg("twelve chars")}})
    assert r["inputTokens"] == 3


def test_control_plane_describes_what_is_exposed(gateway):
    b = gw_client(gateway, service="bedrock")
    pages = list(b.get_paginator("list_inference_profiles").paginate(PaginationConfig={"PageSize": 1}))
    assert len(pages) >= 2, "paging must be exercised"
    ids = [p["inferenceProfileId"] for page in pages for p in page["inferenceProfileSummaries"]]
    assert "us.anthropic.claude-sonnet-4-5-20250929-v1:0" in ids
    assert "abcd1234efgh" in ids
    apps = [p for page in b.get_paginator("list_inference_profiles").paginate(typeEquals="APPLICATION")
            for p in page["inferenceProfileSummaries"]]
    assert [p["inferenceProfileArn"] for p in apps] == [APP_PROFILE]
    p = b.get_inference_profile(inferenceProfileIdentifier=APP_PROFILE)
    assert p["models"][0]["modelArn"].endswith("anthropic.claude-sonnet-4-5-20250929-v1:0")
    models = b.list_foundation_models()["modelSummaries"]
    assert {m["modelId"] for m in models} == {"anthropic.claude-sonnet-4-5-20250929-v1:0",
                                              "anthropic.claude-3-haiku-20240307-v1:0"}
    with pytest.raises(b.exceptions.ResourceNotFoundException):
        b.get_inference_profile(inferenceProfileIdentifier="eu.nothing-here")


def test_application_profile_arn_as_model(gateway, sim):
    c = gw_client(gateway)
    r = c.converse(modelId=APP_PROFILE, messages=msg("via app profile"), inferenceConfig={"maxTokens": 30})
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"] in {"us-east-1", "us-west-2"}


def test_errors_raise_the_right_exception_classes(gateway):
    c = gw_client(gateway, config=NO_VALIDATION)
    with pytest.raises(c.exceptions.ResourceNotFoundException) as e:
        c.converse(modelId="claude-sonet-4-5", messages=msg("x"))
    assert "did you mean" in str(e.value)
    with pytest.raises(c.exceptions.ValidationException) as e:
        c.converse(modelId="chat", messages=[{"role": "user", "content": [{"text": "a", "image": {"format": "png"}}]}])
    assert "messages[0].content[0]" in str(e.value)
    with pytest.raises(c.exceptions.ValidationException):
        c.converse(modelId="chat", messages=[])
    with pytest.raises(c.exceptions.ValidationException) as e:
        c.converse(modelId="chat", messages=msg("x"), inferenceConfig={"temperature": 7})
    # Residency is a hard constraint: a model in an EU region, by ARN, under a
    # US-only default has no target.
    with pytest.raises(c.exceptions.ValidationException) as e:
        c.converse(modelId="arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                   messages=msg("x"))
    assert "residency policy" in str(e.value)
    # An EU profile under the US-only default is never called: the same model
    # is served by its targets inside the policy.
    r = c.converse(modelId="eu.anthropic.claude-sonnet-4-5-20250929-v1:0", messages=msg("x"))
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"].startswith("us-"), r["ResponseMetadata"]
    # Malformed JSON and an oversized body, sent raw.
    wrong_block = json.dumps({"messages": [{"role": "user", "content": ["not a block"]}]}).encode()
    for body, needle in [(b"{not json", "not valid JSON"), (b"x" * 25_000_001, "larger than"),
                         (wrong_block, "messages[0].content[0] must be an object")]:
        req = urllib.request.Request(gateway["url"] + "/model/chat/converse", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.headers["x-amzn-errortype"].startswith("ValidationException")
        assert needle in json.loads(e.value.read())["message"]
        assert e.value.headers["x-amzn-requestid"]


def test_failure_after_first_byte_ends_with_an_exception_frame(gateway, sim):
    for region in ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]:
        put_faults(sim, region, {"cut_after_events": 4})
    try:
        c = gw_client(gateway)
        r = c.converse_stream(modelId="chat", messages=msg("cut me"), inferenceConfig={"maxTokens": 40})
        seen = []
        with pytest.raises(botocore.exceptions.EventStreamError) as e:
            for ev in r["stream"]:
                seen.append(next(iter(ev)))
        assert e.value.response["Error"]["Code"] == "modelStreamErrorException"
        assert seen[0] == "messageStart" and len(seen) == 4, seen
    finally:
        for region in ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]:
            put_faults(sim, region, {})


def test_throttling_reaches_boto3_as_throttling_exception(gateway, sim):
    for region in ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]:
        put_faults(sim, region, {"quota_factor": 0.0})
    try:
        c = gw_client(gateway)
        with pytest.raises(c.exceptions.ThrottlingException) as e:
            c.converse(modelId="chat", messages=msg("x"))
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    finally:
        for region in ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]:
            put_faults(sim, region, {})


def test_endpoint_outage_fails_over_invisibly(gateway, sim):
    """us-east-1's endpoint refuses connections: the same us. profile is called
    through the next US endpoint before any byte reaches the client."""
    put_faults(sim, "us-east-1", {"outage": True})
    try:
        c = gw_client(gateway)
        r = c.converse(modelId="chat", messages=msg("outage"), inferenceConfig={"maxTokens": 20})
        assert "You said: outage" in r["output"]["message"]["content"][0]["text"]
        h = r["ResponseMetadata"]["HTTPHeaders"]
        assert h["x-meridian-attempts"] == "2"
        s = c.converse_stream(modelId="chat", messages=msg("outage stream"), inferenceConfig={"maxTokens": 20})
        kinds = [next(iter(e)) for e in s["stream"]]
        assert kinds[0] == "messageStart" and kinds[-1] == "metadata"
        assert s["ResponseMetadata"]["HTTPHeaders"]["x-meridian-attempts"] == "2"
        rec = [x for x in sim_records(sim) if x["request_id"] == h["x-meridian-upstream-request-id"]][0]
        assert rec["endpoint_region"] != "us-east-1"
        assert rec["inference_region"] in {"us-east-2", "us-west-1", "us-west-2"}, "a region in outage processes nothing"
    finally:
        put_faults(sim, "us-east-1", {})
