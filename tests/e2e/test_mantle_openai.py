"""A model only Mantle serves, on the OpenAI front doors: `/v1/chat/completions`
and `/v1/responses` reach Mantle's OpenAI-compatible endpoint (the client's
request passed through, signed for `bedrock-mantle`, processed in the
region called), plain and streamed, with the surface in the answer and the
record, the tenant's guard on what goes there, stored responses continued
there, and a clear error when Mantle is down everywhere the policy allows."""
import time

import openai
import pytest
from openai import OpenAI

from conftest import fleet_gateway, invocation_record, key_hash, put_faults, sim_records

KEY = "mk-mantle-openai-tenant-00001"
EMAIL = "ann.frontier@example.com"


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("mantle-openai"), f"""
[guards.pii]
email = "anonymize"

[tenants.t]
api_keys = ["{key_hash(KEY)}"]
guard = "pii"

[responses]
store = true

[logging]
sink = "file"
file = "invocations.ndjson"
""")


def client(gw, **headers):
    return OpenAI(base_url=gw["url"] + "/v1", api_key=KEY, max_retries=0, default_headers=headers)


def ready(gw):
    """The gateway's catalog refresh has read Mantle's model lists."""
    deadline = time.time() + 20
    while True:
        try:
            return client(gw).chat.completions.with_raw_response.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "ready?"}])
        except openai.BadRequestError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_chat_completions_reach_mantles_openai_endpoint(gw, sim):
    raw = ready(gw)
    assert raw.headers["x-meridian-surface"] == "mantle-openai", dict(raw.headers)
    rec = invocation_record(gw, raw.headers["x-amzn-requestid"])
    assert rec["meridian"]["surface"] == "mantle-openai" and rec["modelId"] == "openai.gpt-5.5", rec
    assert rec["inferenceRegion"] == raw.headers["x-meridian-region"] == "us-east-1", rec
    assert rec["output"]["outputTokenCount"] > 0, rec
    seen = len(sim_records(sim))
    chunks = list(client(gw).chat.completions.create(
        model="gpt-5.5", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": f"mail {EMAIL} please"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Simulated reply from us-east-1"), text
    assert chunks[-1].usage and chunks[-1].usage.total_tokens > 0, chunks[-1]
    # The guard read the request Mantle got: it saw a placeholder, and the
    # answer has the address back.
    prompts = [r["prompt"] for r in sim_records(sim)[seen:]]
    assert prompts and all(EMAIL not in p for p in prompts), prompts
    assert EMAIL in text, text


def test_responses_reach_mantle_and_continue_there(gw, sim):
    ready(gw)
    c = client(gw)
    first = c.responses.create(model="gpt-5.5", input="my name is Grace")
    assert first.status == "completed" and first.output_text.startswith("Simulated reply"), first
    assert c.responses.retrieve(first.id).output_text == first.output_text
    seen = len(sim_records(sim))
    kinds, final = [], None
    for e in c.responses.create(model="gpt-5.5", input="and my name?", previous_response_id=first.id, stream=True):
        kinds.append(e.type)
        if e.type == "response.completed":
            final = e.response
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    prompt = sim_records(sim)[seen:][-1]["prompt"]
    assert "my name is Grace" in prompt and "and my name?" in prompt, prompt
    assert c.responses.retrieve(final.id).output_text == final.output_text


def test_with_mantle_down_where_the_policy_allows_the_error_says_why(gw, sim):
    ready(gw)
    eu = client(gw, **{"x-meridian-residency": "eu"})
    assert eu.chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "eu"}]).headers["x-meridian-region"] == "eu-west-1"
    put_faults(sim, "eu-west-1", {"surfaces_down": ["mantle-openai"]})
    try:
        with pytest.raises(openai.APIStatusError) as e:
            eu.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "eu"}])
    finally:
        put_faults(sim, "eu-west-1", {})
    assert e.value.status_code == 503, e.value
    assert "only Bedrock's Mantle endpoint serves 'gpt-5.5' (in eu-west-1)" in e.value.message, e.value.message


def test_open_weight_models_use_bedrock_runtimes_openai_endpoint_then_converse(gw, sim):
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(model="gpt-oss-120b",
                                                      messages=[{"role": "user", "content": "runtime openai"}])
    assert raw.headers["x-meridian-surface"] == "runtime-openai", dict(raw.headers)
    assert raw.headers["x-meridian-region"] == "us-west-2"
    assert "You said: runtime openai" in raw.parse().choices[0].message.content
    rec = invocation_record(gw, raw.headers["x-amzn-requestid"])
    assert rec["meridian"]["surface"] == "runtime-openai" and rec["output"]["outputTokenCount"] > 0, rec
    r = c.responses.with_raw_response.create(model="gpt-oss-120b", input="runtime responses")
    assert r.headers["x-meridian-surface"] == "runtime-openai" and "runtime responses" in r.parse().output_text
    # With that endpoint down, Converse in the same region answers.
    put_faults(sim, "us-west-2", {"surfaces_down": ["runtime-openai"]})
    try:
        raw = c.chat.completions.with_raw_response.create(model="gpt-oss-120b",
                                                          messages=[{"role": "user", "content": "fallback"}])
    finally:
        put_faults(sim, "us-west-2", {})
    assert raw.headers["x-meridian-surface"] == "runtime", dict(raw.headers)
    assert "You said: fallback" in raw.parse().choices[0].message.content


def test_a_cached_answer_is_served_in_its_own_surfaces_format(sim, tmp_path):
    """An answer is cached with the surface it came from: bedrock-runtime's
    OpenAI endpoint (passed through) and Converse (translated) share the
    account, region and model ID, and each is read in its own format."""
    for g in fleet_gateway(sim, tmp_path, '[models.oss]\nmodel = "gpt-oss-120b"\ncache = { ttl = "1m" }\n'):
        c = OpenAI(base_url=g["url"] + "/v1", api_key="x", max_retries=0)
        ask = [{"role": "user", "content": "cache me"}]
        first = c.chat.completions.with_raw_response.create(model="oss", messages=ask)
        assert first.headers["x-meridian-surface"] == "runtime-openai"
        again = c.chat.completions.with_raw_response.create(model="oss", messages=ask)
        assert again.headers["x-meridian-cache"] == "hit"
        assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
        # Converse answers while the OpenAI endpoint is down; its answer is
        # cached as Converse's and read back as Converse's.
        put_faults(sim, "us-west-2", {"surfaces_down": ["runtime-openai"]})
        try:
            ask2 = [{"role": "user", "content": "cache the fallback"}]
            fb = c.chat.completions.with_raw_response.create(model="oss", messages=ask2)
            assert fb.headers["x-meridian-surface"] == "runtime", dict(fb.headers)
        finally:
            put_faults(sim, "us-west-2", {})
        hit = c.chat.completions.with_raw_response.create(model="oss", messages=ask2)
        assert hit.headers["x-meridian-cache"] == "hit", dict(hit.headers)
        assert hit.parse().choices[0].message.content == fb.parse().choices[0].message.content
