"""The simulated fleet speaks Bedrock's native Anthropic Messages endpoints:
bedrock-runtime's `/anthropic/v1/messages` (SigV4 `bedrock`, `anthropic_version`
in the body, profile IDs) and Mantle's (SigV4 `bedrock-mantle`, the
`anthropic-version` header, base IDs processed in the region called), plain
and as server-sent events, and refuses what Bedrock refuses there."""
import json

import anthropic
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import urllib.request
from anthropic import AnthropicBedrockMantle

from conftest import sim_records

ASK = [{"role": "user", "content": "native messages"}]


def mantle(sim, region="us-east-1"):
    return AnthropicBedrockMantle(aws_access_key=sim["credentials"]["access_key_id"],
                                  aws_secret_key=sim["credentials"]["secret_access_key"], aws_region=region,
                                  base_url=sim["regions"][region]["mantle_url"] + "/anthropic", max_retries=0)


def runtime(sim, body, region="us-east-1", service="bedrock", path="/anthropic/v1/messages"):
    """A SigV4-signed POST to the region's runtime Messages endpoint: (status, headers, body bytes)."""
    url = sim["regions"][region]["url"] + path
    creds = botocore.credentials.Credentials(sim["credentials"]["access_key_id"], sim["credentials"]["secret_access_key"])
    req = botocore.awsrequest.AWSRequest("POST", url, data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
    botocore.auth.SigV4Auth(creds, service, region).add_auth(req)
    r = urllib.request.Request(url, data=req.body, method="POST", headers=dict(req.headers))
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def sse_events(raw):
    out = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            out.append((lines.get("event"), json.loads(lines["data"])))
    return out


def test_mantle_messages_plain_and_streamed_in_region(sim):
    seen = len(sim_records(sim))
    c = mantle(sim)
    m = c.messages.create(model="anthropic.claude-opus-5-5", max_tokens=200, messages=ASK,
                          extra_body={"thinking": {"type": "adaptive"}})
    assert "You said: native messages" in m.content[-1].text and m.usage.output_tokens > 0
    with c.messages.stream(model="anthropic.claude-opus-5-5", max_tokens=200, messages=ASK) as s:
        kinds = [e.type for e in s]
        assert "You said: native messages" in s.get_final_text()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    records = sim_records(sim)[seen:]
    assert [r["operation"] for r in records] == ["MantleMessages"] * 2, records
    assert all(r["inference_region"] == "us-east-1" for r in records), "Mantle processes where it is called"


def test_mantle_refuses_what_mantle_refuses(sim):
    c = mantle(sim)
    for model, needle in [("us.anthropic.claude-opus-5-5", "base model IDs"),
                          ("anthropic.claude-sonnet-4-5-20250929-v1:0", "not available on the Messages API"),
                          ("anthropic.claude-unknown-9", "not available")]:
        with pytest.raises(anthropic.BadRequestError) as e:
            c.messages.create(model=model, max_tokens=20, messages=ASK)
        assert needle in str(e.value), e.value
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="anthropic.claude-opus-5-5", max_tokens=20, messages=[])
    assert "at least one message" in str(e.value)
    # Signed for bedrock-runtime, not for Mantle.
    status, _, body = runtime(sim, {"model": "anthropic.claude-opus-5-5", "max_tokens": 20, "messages": ASK},
                              path="/mantle/anthropic/v1/messages")
    assert status == 403 and json.loads(body)["error"]["type"] == "authentication_error", body


def test_runtime_messages_plain_and_streamed_with_profiles(sim):
    body = {"anthropic_version": "bedrock-2023-05-31", "model": "us.anthropic.claude-opus-5-5",
            "max_tokens": 200, "messages": ASK}
    status, headers, raw = runtime(sim, body)
    assert status == 200, raw
    m = json.loads(raw)
    assert m["type"] == "message" and "You said: native messages" in m["content"][-1]["text"]
    status, headers, raw = runtime(sim, {**body, "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop", events
    assert all(name == payload["type"] for name, payload in events)
    text = "".join(p["delta"].get("text", "") for n, p in events if n == "content_block_delta")
    assert "You said: native messages" in text
    # Refusals, in Anthropic's error shape with Bedrock's status.
    no_version = {k: v for k, v in body.items() if k != "anthropic_version"}
    legacy = {**body, "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"}
    for bad, needle in [(no_version, "anthropic_version"), (legacy, "not available on the Messages API"),
                        ({**body, "messages": []}, "at least one message")]:
        status, _, raw = runtime(sim, bad)
        err = json.loads(raw)
        assert status == 400 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error", raw
        assert needle in err["error"]["message"], err


def test_invoke_model_refuses_a_claude_body_without_its_version(sim):
    """Bedrock's InvokeModel refuses a Claude body without `anthropic_version`;
    so does the fleet, and takes the same body with it."""
    body = {"max_tokens": 20, "messages": ASK}
    status, _, raw = runtime(sim, body, path="/model/us.anthropic.claude-opus-4-7/invoke")
    assert status == 400 and "anthropic_version" in json.loads(raw)["message"], raw
    status, _, raw = runtime(sim, {**body, "anthropic_version": "bedrock-2023-05-31"},
                             path="/model/us.anthropic.claude-opus-4-7/invoke")
    assert status == 200 and json.loads(raw)["type"] == "message", raw
