"""OpenAI-compatible providers as routing targets, against a real LiteLLM
proxy from PyPI (pinned; `scripts/test` installs it into .venv-litellm)
serving mock responses.

Every Bedrock candidate of `chat` (US policy) is down; its fallback chain
names a provider declared in us-east-2 (LiteLLM) and one declared in
eu-west-1 (a listening socket that counts connections). boto3 (Converse,
ConverseStream, InvokeModel), the OpenAI SDK and the Anthropic SDK get the
LiteLLM answer in their own wire format; the EU provider is never called.
"""
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from conftest import ROOT, fleet_gateway, free_port, gw_client, invocation_record, put_faults

LITELLM = os.environ.get("LITELLM_BIN", str(ROOT / ".venv-litellm" / "bin" / "litellm"))
LITELLM_KEY = "sk-e2e-provider-key-0001"
REPLY = "Hello from the provider."
US = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]


class Trap:
    """A TCP listener that counts connections and closes them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def stop(self):
        self.stopped = True
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="module")
def litellm(tmp_path_factory):
    assert Path(LITELLM).exists(), f"{LITELLM} is missing: run scripts/test (it installs LiteLLM)"
    d = tmp_path_factory.mktemp("litellm")
    port = free_port()
    (d / "config.yaml").write_text(f"""
model_list:
  - model_name: llama-local
    litellm_params:
      model: openai/llama-local
      api_base: http://127.0.0.1:9/v1
      api_key: unused
      mock_response: "{REPLY}"
litellm_settings:
  telemetry: false
general_settings:
  master_key: {LITELLM_KEY}
""")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(d),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    log = open(d / "litellm.log", "w")
    p = subprocess.Popen([LITELLM, "--config", str(d / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
                         env=env, cwd=d, stdout=log, stderr=log)
    try:
        deadline = time.time() + 90
        while True:
            assert p.poll() is None, (d / "litellm.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1)
                break
            except Exception:
                assert time.time() < deadline, "LiteLLM did not start in 90 s"
                time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.fixture(scope="module")
def trap():
    t = Trap()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gw(sim, litellm, trap, tmp_path_factory):
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("providers"), f"""
[routing]
max_attempts = 6

[[providers]]
name = "local-us"
base_url = "{litellm}"
api_key_env = "LOCAL_US_KEY"
region = "us-east-2"
models = ["llama-local"]

[[providers]]
name = "local-eu"
base_url = "http://127.0.0.1:{trap.port}/v1"
region = "eu-west-1"
models = ["llama-local"]

[models.chat]
model = "claude-sonnet-4-5"
residency = ["us"]
fallback = ["eu-local", "us-local"]

[models.us-local]
model = "llama-local"
provider = "local-us"

[models.eu-local]
model = "llama-local"
provider = "local-eu"

[logging]
sink = "file"
file = "invocations.ndjson"
""", env={"LOCAL_US_KEY": LITELLM_KEY})


@pytest.fixture
def us_down(sim):
    for r in US:
        put_faults(sim, r, {"outage": True})
    try:
        yield
    finally:
        for r in US:
            put_faults(sim, r, {})


ASK = [{"role": "user", "content": [{"text": "anyone there?"}]}]


def served_by_provider(headers):
    assert headers["x-meridian-account"] == "local-us", headers
    assert headers["x-meridian-region"] == "us-east-2", headers


def test_the_provider_is_called_directly_in_its_declared_region(gw, trap):
    r = gw_client(gw).converse(modelId="us-local", messages=ASK, inferenceConfig={"maxTokens": 20})
    assert r["output"]["message"]["content"][0]["text"] == REPLY
    assert r["usage"]["inputTokens"] > 0 and r["usage"]["outputTokens"] > 0
    served_by_provider(r["ResponseMetadata"]["HTTPHeaders"])
    rec = invocation_record(gw, r["ResponseMetadata"]["RequestId"])
    assert rec["region"] == "us-east-2" and rec["meridian"]["account"] == "local-us", rec
    # The trap does count: the EU provider, asked for directly (the model's
    # own policy is unrestricted), is connected to and fails.
    before = trap.connections
    with pytest.raises(Exception):
        gw_client(gw).converse(modelId="eu-local", messages=ASK)
    assert trap.connections > before


def test_boto3_gets_the_provider_when_every_bedrock_candidate_is_down(gw, trap, us_down):
    trap.connections = 0
    rt = gw_client(gw)
    r = rt.converse(modelId="chat", messages=ASK, inferenceConfig={"maxTokens": 20})
    assert r["output"]["message"]["content"][0]["text"] == REPLY
    assert r["stopReason"] == "end_turn"
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    served_by_provider(headers)
    assert "fallback:us-east-2:success" in headers["x-meridian-route"], headers["x-meridian-route"]

    s = rt.converse_stream(modelId="chat", messages=ASK, inferenceConfig={"maxTokens": 20})
    served_by_provider(s["ResponseMetadata"]["HTTPHeaders"])
    events = list(s["stream"])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == REPLY
    assert any("messageStop" in e for e in events) and any("metadata" in e for e in events)

    # InvokeModel with an Anthropic body: the answer in Anthropic's shape.
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20,
                       "messages": [{"role": "user", "content": "native please"}]})
    inv = json.loads(rt.invoke_model(modelId="chat", body=body)["body"].read())
    assert inv["type"] == "message" and inv["content"][0]["text"] == REPLY, inv
    st = rt.invoke_model_with_response_stream(modelId="chat", body=body)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in st["body"] if "chunk" in e]
    kinds = [c["type"] for c in chunks]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert "".join(c["delta"].get("text", "") for c in chunks if c["type"] == "content_block_delta") == REPLY
    assert trap.connections == 0, "the EU provider is outside chat's US policy"


def test_openai_and_anthropic_sdks_get_the_provider_as_a_fallback(gw, trap, us_down):
    trap.connections = 0
    oa = openai.OpenAI(base_url=gw["url"] + "/v1", api_key="unused", max_retries=0, timeout=30)
    raw = oa.chat.completions.with_raw_response.create(
        model="chat", max_tokens=20, messages=[{"role": "user", "content": "openai sdk"}])
    assert raw.headers["x-meridian-account"] == "local-us"
    assert raw.parse().choices[0].message.content == REPLY
    stream = oa.chat.completions.create(model="chat", max_tokens=20, stream=True,
                                        messages=[{"role": "user", "content": "openai stream"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY

    an = anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0, timeout=30)
    m = an.messages.with_raw_response.create(model="chat", max_tokens=20,
                                             messages=[{"role": "user", "content": "anthropic sdk"}])
    assert m.headers["x-meridian-account"] == "local-us"
    assert m.parse().content[0].text == REPLY
    with an.messages.stream(model="chat", max_tokens=20,
                            messages=[{"role": "user", "content": "anthropic stream"}]) as s:
        assert "".join(s.text_stream) == REPLY
        final = s.get_final_message()
    assert final.stop_reason == "end_turn"
    assert trap.connections == 0, "the EU provider is outside chat's US policy"


def test_an_eu_request_never_reaches_the_us_provider_nor_bedrock_outside_the_eu(gw, trap, us_down):
    # Narrowed to the EU, chat has no Bedrock candidate in the US policy and
    # its US provider is outside: nothing is left, and nothing is called.
    trap.connections = 0
    oa = openai.OpenAI(base_url=gw["url"] + "/v1", api_key="unused", max_retries=0, timeout=30,
                       default_headers={"x-meridian-residency": "eu"})
    with pytest.raises(openai.APIStatusError) as e:
        oa.chat.completions.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "eu"}])
    assert e.value.status_code in (400, 403), e.value
    assert trap.connections == 0
