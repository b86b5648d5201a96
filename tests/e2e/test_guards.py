"""Guardrails and the response cache, through real clients.

Meridian's own detectors under each action (boto3 and the OpenAI SDK; the
fleet records the prompt it was given, so the tests see what the model saw),
a card number the model streams across events, Bedrock Guardrails mapped in
two EU regions with failover between them and an intervention as boto3
parses it, and the response cache: repeats answered without the fleet, on
another replica through Redis, never across residency, streams replayed to
boto3, the OpenAI SDK and the Anthropic SDK."""
import base64
import json
import urllib.error
import urllib.request

import anthropic
import boto3
import botocore
import openai
import pytest

from conftest import (NO_RETRY, invocation_record, run_sim, sim_control, sim_records, start_fleet_gateway,
                      wait_for)

REGIONS = "us-east-1,us-east-2,eu-west-1,eu-central-1,eu-west-3"
EMAIL, CARD, IBAN = "jane.doe@example.com", "4111111111111111", "DE89370400440532013000"
PROMPT = f"mail {EMAIL} card {CARD} iban {IBAN}"

GUARDS = """
[logging]
sink = "file"
file = "invocations.ndjson"

[guards.mask]
email = "mask"
card = "mask"
iban = "mask"

[guards.anon]
email = "anonymize"
card = "anonymize"
iban = "anonymize"

[guards.block]
email = "block"
card = "block"
iban = "block"

[models.masked]
model = "claude-sonnet-4-5"
guard = "mask"

[models.anon]
model = "claude-sonnet-4-5"
guard = "anon"

[models.blocked]
model = "claude-sonnet-4-5"
guard = "block"

[models.eu-guarded]
model = "claude-sonnet-4-5"
residency = ["eu"]
guardrail = { eu-west-1 = "gr-west:1", eu-central-1 = "gr-central:2" }

[routing]
hedging = false
"""

CACHE = """
[logging]
sink = "file"
file = "invocations.ndjson"

[models.cached]
model = "claude-sonnet-4-5"
cache = { ttl = "10m" }

[models.cached-anon]
model = "claude-sonnet-4-5"
guard = "anon"
cache = { ttl = "10m" }

[guards.anon]
email = "anonymize"
"""

GUARDRAILS = [
    {"id": "gr-west", "version": "1", "region": "eu-west-1", "denied_words": ["bluebird"],
     "blocked_input_message": "Blocked in eu-west-1."},
    {"id": "gr-central", "version": "2", "region": "eu-central-1", "denied_words": ["bluebird"],
     "blocked_input_message": "Blocked in eu-central-1."},
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A fleet of its own, with three EU regions and the guardrails above."""
    for m in run_sim(tmp_path_factory.mktemp("gsim"), REGIONS, 11):
        sim_control(m, "PUT", "/guardrails", GUARDRAILS)
        yield m



@pytest.fixture(scope="module")
def gw(fleet, tmp_path_factory):
    g = start_fleet_gateway(fleet, tmp_path_factory.mktemp("guards"), GUARDS)
    yield g
    g["proc"].stop()


@pytest.fixture(scope="module")
def replicas(fleet, redis, tmp_path_factory):
    state = f'\n[state]\nbackend = "redis"\nurl = "{redis.url}"\n'
    gws = [start_fleet_gateway(fleet, tmp_path_factory.mktemp(f"cache{i}"), CACHE + state) for i in range(2)]
    yield gws
    for g in gws:
        g["proc"].stop()


@pytest.fixture(scope="module")
def single(fleet, tmp_path_factory):
    g = start_fleet_gateway(fleet, tmp_path_factory.mktemp("cache-mem"), CACHE)
    yield g
    g["proc"].stop()


def brt(gw):
    return boto3.client("bedrock-runtime", endpoint_url=gw["url"], region_name="us-east-1",
                        aws_access_key_id="AKIDCLIENT", aws_secret_access_key="client-secret", config=NO_RETRY)


def oai(gw):
    return openai.OpenAI(base_url=gw["url"] + "/v1", api_key="unused", max_retries=0, timeout=30)


def converse(gw, model, text, **kw):
    return brt(gw).converse(modelId=model, messages=[{"role": "user", "content": [{"text": text}]}],
                            inferenceConfig={"maxTokens": 64}, **kw)


def answer_text(r):
    return "".join(b.get("text", "") for b in r["output"]["message"]["content"])


def stream_text(events):
    out = []
    for e in events:
        if "contentBlockDelta" in e:
            out.append(e["contentBlockDelta"]["delta"].get("text", ""))
    return out


def new_records(sim, before):
    return sim_records(sim)[before:]


def b64(text):
    return "b64:" + base64.b64encode(text.encode()).decode()


# ---- Meridian's own detectors ------------------------------------------------

def test_mask_hides_values_from_the_model_and_the_client(gw, fleet):
    before = len(sim_records(fleet))
    r = converse(gw, "masked", PROMPT)
    [rec] = new_records(fleet, before)
    for value in (EMAIL, CARD, IBAN):
        assert value not in rec["prompt"], rec["prompt"]
    for label in ("[EMAIL]", "[CARD]", "[IBAN]"):
        assert label in rec["prompt"], rec["prompt"]
    text = answer_text(r)
    assert "[EMAIL]" in text and EMAIL not in text, text
    log = invocation_record(gw, r["ResponseMetadata"]["RequestId"])
    fired = {(g["direction"], g["type"], g["action"]) for g in log["meridian"]["guard"]}
    assert {("input", t, "mask") for t in ("EMAIL", "CARD", "IBAN")} <= fired, fired
    assert EMAIL not in json.dumps(log), "a record must never carry a value"
    with urllib.request.urlopen(gw["url"] + "/metrics", timeout=5) as m:
        metrics = m.read().decode()
    assert 'meridian_guard_findings_total{model="masked",direction="input",detector="CARD",action="mask"}' \
        in metrics, [l for l in metrics.splitlines() if "guard" in l]

    # The OpenAI SDK, plain and streamed: the model sees types, so does the client.
    before = len(sim_records(fleet))
    c = oai(gw).chat.completions.create(model="masked", max_tokens=64,
                                        messages=[{"role": "user", "content": PROMPT}])
    assert "[IBAN]" in c.choices[0].message.content and IBAN not in c.choices[0].message.content
    chunks = oai(gw).chat.completions.create(model="masked", max_tokens=64, stream=True,
                                             messages=[{"role": "user", "content": PROMPT}])
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "[CARD]" in streamed and CARD not in streamed, streamed
    for rec in new_records(fleet, before):
        assert EMAIL not in rec["prompt"] and "[EMAIL]" in rec["prompt"], rec


def test_anonymize_gives_the_model_placeholders_and_the_client_its_values(gw, fleet):
    before = len(sim_records(fleet))
    r = converse(gw, "anon", PROMPT)
    [rec] = new_records(fleet, before)
    assert "<EMAIL_1>" in rec["prompt"] and "<CARD_1>" in rec["prompt"] and "<IBAN_1>" in rec["prompt"], rec
    for value in (EMAIL, CARD, IBAN):
        assert value not in rec["prompt"], rec["prompt"]
    text = answer_text(r)
    # The fleet echoes the prompt: the client gets its own values back.
    assert EMAIL in text and CARD in text and IBAN in text, text
    assert "<EMAIL_1>" not in text

    # The OpenAI SDK, plain and streamed.
    before = len(sim_records(fleet))
    c = oai(gw).chat.completions.create(model="anon", max_tokens=64,
                                        messages=[{"role": "user", "content": PROMPT}])
    assert EMAIL in c.choices[0].message.content and CARD in c.choices[0].message.content
    chunks = oai(gw).chat.completions.create(model="anon", max_tokens=64, stream=True,
                                             messages=[{"role": "user", "content": PROMPT}])
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert EMAIL in streamed and CARD in streamed and IBAN in streamed, streamed
    for rec in new_records(fleet, before):
        assert EMAIL not in rec["prompt"] and "<EMAIL_1>" in rec["prompt"], rec


def test_block_refuses_naming_types_never_values_before_the_model(gw, fleet):
    before = len(sim_records(fleet))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        converse(gw, "blocked", PROMPT)
    err = e.value.response["Error"]
    assert err["Code"] == "ValidationException"
    for label in ("EMAIL", "CARD", "IBAN"):
        assert label in err["Message"], err["Message"]
    for value in (EMAIL, CARD, IBAN):
        assert value not in err["Message"]
    with pytest.raises(openai.BadRequestError) as oe:
        oai(gw).chat.completions.create(model="blocked", max_tokens=8,
                                        messages=[{"role": "user", "content": f"card {CARD}"}])
    assert "CARD" in str(oe.value) and CARD not in str(oe.value)
    assert len(sim_records(fleet)) == before, "a blocked prompt reached the model"


def post_raw(gw, path, body, content_type="application/json"):
    """(status, parsed JSON body) of a raw POST: bodies boto3 would not send."""
    req = urllib.request.Request(gw["url"] + path, data=body, method="POST",
                                 headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_what_the_guard_cannot_read_does_not_go_upstream(gw, fleet):
    """Bodies the guard's JSON parser refuses are refused, not forwarded
    unscanned; text documents (Converse `source.text` and text-format bytes,
    Anthropic text sources) are read like any text."""
    before = len(sim_records(fleet))
    native = ('{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,'
              '"messages":[{"role":"user","content":"card %s %s"}]}')
    unreadable = {
        "a lone surrogate": (native % (CARD, "\\ud800")).encode(),
        "a byte-order mark": b"\xef\xbb\xbf" + (native % (CARD, "")).encode(),
        "trailing bytes": (native % (CARD, "")).encode() + b" trailing",
        "nesting 200 deep": ('{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":'
                             '[{"role":"user","content":"hi"}],"x":' + "[" * 200 + f'"{CARD}"' + "]" * 200 + "}").encode(),
    }
    for what, body in unreadable.items():
        status, err = post_raw(gw, "/model/blocked/invoke", body)
        assert status == 400 and "cannot read" in err["message"], (what, status, err)
    doc = lambda source: {"messages": [{"role": "user", "content": [  # noqa: E731
        {"document": {"format": "txt", "name": "notes", "source": source}}, {"text": "summarize"}]}],
        "inferenceConfig": {"maxTokens": 8}}
    for source in ({"text": f"card {CARD}"},
                   {"bytes": base64.b64encode(f"card {CARD}".encode()).decode()}):
        status, err = post_raw(gw, "/model/blocked/converse", json.dumps(doc(source)).encode())
        assert status == 400 and "CARD" in err["message"], (source, status, err)
    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0).messages.create(
            model="blocked", max_tokens=8, messages=[{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                "data": f"card {CARD}"}},
                {"type": "text", "text": "summarize"}]}])
    assert "CARD" in str(e.value)
    assert len(sim_records(fleet)) == before, "an unscanned prompt reached the model"
    # Masked, a text document's bytes reach the model without the card.
    status, _ = post_raw(gw, "/model/masked/converse", json.dumps(doc(
        {"bytes": base64.b64encode(f"card {CARD}".encode()).decode()})).encode())
    assert status == 200
    assert len(sim_records(fleet)) == before + 1


def test_a_card_number_the_model_streams_across_events_is_caught(gw, fleet):
    # The model says a card number its prompt never contained; the fleet
    # streams it in pieces of four digits, one event each.
    prompt = "card " + b64(CARD + " ok")
    r = brt(gw).converse_stream(modelId="masked", messages=[{"role": "user", "content": [{"text": prompt}]}],
                                inferenceConfig={"maxTokens": 64})
    parts = stream_text(r["stream"])
    text = "".join(parts)
    assert "[CARD]" in text, parts
    assert not any("1111" in p for p in parts), parts
    # Unary, and under block: the answer is refused, naming the type.
    assert "[CARD]" in answer_text(converse(gw, "masked", prompt))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        converse(gw, "blocked", prompt)
    assert "CARD" in e.value.response["Error"]["Message"] and CARD not in e.value.response["Error"]["Message"]
    r = brt(gw).converse_stream(modelId="blocked", messages=[{"role": "user", "content": [{"text": prompt}]}],
                                inferenceConfig={"maxTokens": 64})
    seen = []
    with pytest.raises(botocore.exceptions.EventStreamError) as se:
        for e in r["stream"]:
            seen.append(json.dumps(e))
    assert "CARD" in str(se.value), se.value
    assert not any("1111" in s for s in seen), seen
    # The fleet records the stream it was cut off from once it notices; wait
    # for that, so later tests counting the fleet's records do not see it.
    wait_for(lambda: any(x["outcome"] == "client-gone" for x in sim_records(fleet)), 10, "the cut stream's record")


# ---- Bedrock Guardrails, region by region ---------------------------------

def test_guardrails_fail_over_between_eu_regions_and_unmapped_regions_are_never_called(gw, fleet):
    # x-meridian-region is where the eu. profile processed the request; the
    # guardrail belongs to the region whose endpoint was called.
    before = len(sim_records(fleet))
    r = converse(gw, "eu-guarded", "hello there")
    upstream_id = r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-upstream-request-id"]
    [rec] = [x for x in sim_records(fleet) if x["request_id"] == upstream_id]
    first = rec["endpoint_region"]
    assert first in ("eu-west-1", "eu-central-1"), rec
    other = "eu-central-1" if first == "eu-west-1" else "eu-west-1"
    sim_control(fleet, "PUT", f"/regions/{first}/faults", {"outage": True})
    try:
        for _ in range(3):
            r = converse(gw, "eu-guarded", "hello again")
            h = r["ResponseMetadata"]["HTTPHeaders"]
            assert h["x-meridian-region"].startswith("eu-")
            # The fleet refuses a guardrail ID its region does not have: an
            # answer called in `other` means its own guardrail was sent.
            [rec] = [x for x in sim_records(fleet) if x["request_id"] == h["x-meridian-upstream-request-id"]]
            assert rec["endpoint_region"] == other
    finally:
        sim_control(fleet, "DELETE", f"/regions/{first}/faults")
    called = {x["endpoint_region"] for x in new_records(fleet, before)}
    assert called <= {"eu-west-1", "eu-central-1"}, called


def test_an_intervention_reaches_boto3_as_bedrock_shapes_it(gw, fleet):
    # The client's own guardrailConfig keeps its trace setting; Meridian puts
    # in the guardrail of the region it calls.
    r = converse(gw, "eu-guarded", "tell me about bluebird",
                 guardrailConfig={"guardrailIdentifier": "placeholder", "guardrailVersion": "1", "trace": "enabled"})
    region = [x for x in sim_records(fleet) if x["request_id"] == r["ResponseMetadata"]["HTTPHeaders"].get(
        "x-meridian-upstream-request-id")][0]["endpoint_region"]
    assert r["stopReason"] == "guardrail_intervened"
    assert answer_text(r) == f"Blocked in {region}."
    gid = {"eu-west-1": "gr-west", "eu-central-1": "gr-central"}[region]
    words = r["trace"]["guardrail"]["inputAssessment"][gid]["wordPolicy"]["customWords"]
    assert words[0]["match"].lower() == "bluebird" and words[0]["action"] == "BLOCKED"
    s = brt(gw).converse_stream(modelId="eu-guarded", messages=[{"role": "user", "content": [{"text": "bluebird"}]}])
    stops = [e["messageStop"]["stopReason"] for e in s["stream"] if "messageStop" in e]
    assert stops == ["guardrail_intervened"]


def test_apply_guardrail_is_routed_to_a_region_with_the_guardrail_and_fails_over(gw, fleet):
    def apply(text):
        return brt(gw).apply_guardrail(guardrailIdentifier="eu-guarded", guardrailVersion="1", source="INPUT",
                                       content=[{"text": {"text": text}}])
    r = apply("the bluebird plan")
    assert r["action"] == "GUARDRAIL_INTERVENED"
    region = r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"]
    assert r["outputs"] == [{"text": f"Blocked in {region}."}], r["outputs"]
    assert apply("nothing to see")["action"] == "NONE"
    other = "eu-central-1" if region == "eu-west-1" else "eu-west-1"
    before = len(sim_records(fleet))
    sim_control(fleet, "PUT", f"/regions/{region}/faults", {"outage": True})
    try:
        r = apply("bluebird again")
    finally:
        sim_control(fleet, "DELETE", f"/regions/{region}/faults")
    assert r["outputs"] == [{"text": f"Blocked in {other}."}]
    assert {x["endpoint_region"] for x in new_records(fleet, before)} == {other}
    # A guardrail ID mapped in one region also names the model's mapping.
    r = brt(gw).apply_guardrail(guardrailIdentifier="gr-central", guardrailVersion="2", source="INPUT",
                                content=[{"text": {"text": "hello"}}])
    assert r["action"] == "NONE"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        brt(gw).apply_guardrail(guardrailIdentifier="unknown", guardrailVersion="1", source="INPUT",
                                content=[{"text": {"text": "hello"}}])
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---- The response cache -------------------------------------------------------

def test_a_repeat_is_answered_from_memory_without_the_fleet(single, fleet):
    text = "cache me please"
    before = len(sim_records(fleet))
    a = converse(single, "cached", text)
    b = converse(single, "cached", text)
    assert len(sim_records(fleet)) == before + 1, "the repeat reached the fleet"
    hb = b["ResponseMetadata"]["HTTPHeaders"]
    assert hb.get("x-meridian-cache") == "hit" and "x-meridian-attempts" not in hb, hb
    assert answer_text(a) == answer_text(b)
    log = invocation_record(single, b["ResponseMetadata"]["RequestId"])
    assert log["meridian"]["cache"] == "hit"
    assert log["meridian"].get("estimatedCostUsd", 0) == 0
    assert log["inferenceRegion"] == a["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"]
    # no-store and refresh reach the fleet.
    for mode in ("no-store", "refresh"):
        c = brt(single)
        c.meta.events.register("before-send.bedrock-runtime.Converse",
                               lambda request, **_: request.headers.__setitem__("x-meridian-cache", mode))
        c.converse(modelId="cached", messages=[{"role": "user", "content": [{"text": text}]}],
                   inferenceConfig={"maxTokens": 64})
    assert len(sim_records(fleet)) == before + 3


def test_an_entry_made_in_the_us_is_never_served_to_an_eu_only_request(single, fleet):
    text = "residency and caches"
    us = converse(single, "cached", text)
    assert us["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"].startswith("us-")
    before = len(sim_records(fleet))
    c = brt(single)
    c.meta.events.register("before-send.bedrock-runtime.Converse",
                           lambda request, **_: request.headers.__setitem__("x-meridian-residency", "eu"))
    eu = c.converse(modelId="cached", messages=[{"role": "user", "content": [{"text": text}]}],
                    inferenceConfig={"maxTokens": 64})
    h = eu["ResponseMetadata"]["HTTPHeaders"]
    assert h["x-meridian-region"].startswith("eu-") and h.get("x-meridian-cache") != "hit", h
    [rec] = new_records(fleet, before)
    assert (rec["inference_region"] or rec["endpoint_region"]).startswith("eu-")


def test_streaming_hits_parse_in_boto3_the_openai_sdk_and_the_anthropic_sdk(single, fleet):
    before = len(sim_records(fleet))
    msgs = [{"role": "user", "content": [{"text": "stream me twice"}]}]
    runs = []
    for _ in range(2):
        r = brt(single).converse_stream(modelId="cached", messages=msgs, inferenceConfig={"maxTokens": 64})
        events = list(r["stream"])
        runs.append((r["ResponseMetadata"]["HTTPHeaders"].get("x-meridian-cache"), "".join(stream_text(events)),
                     [list(e)[0] for e in events]))
    assert runs[1][0] == "hit" and runs[1][1] == runs[0][1] and runs[1][2] == runs[0][2], runs
    assert runs[1][2][-1] == "metadata"

    texts = []
    for _ in range(2):
        chunks = oai(single).chat.completions.create(model="cached", max_tokens=64, stream=True,
                                                     messages=[{"role": "user", "content": "openai stream twice"}])
        texts.append("".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices))
    assert texts[0] == texts[1] and texts[0]

    ac = anthropic.Anthropic(base_url=single["url"], api_key="unused", max_retries=0)
    got = []
    for _ in range(2):
        with ac.messages.stream(model="cached", max_tokens=64,
                                messages=[{"role": "user", "content": "anthropic stream twice"}]) as s:
            got.append(s.get_final_text())
    assert got[0] == got[1] and got[0]
    # Three streams made, three repeated: the fleet saw each once.
    assert len(sim_records(fleet)) == before + 3


def test_a_cached_anonymized_answer_gives_each_client_its_own_values(single, fleet):
    before = len(sim_records(fleet))
    a = converse(single, "cached-anon", "write to first@example.com")
    b = converse(single, "cached-anon", "write to second@example.com")
    assert len(sim_records(fleet)) == before + 1, "same prompt after anonymizing: one upstream call"
    assert b["ResponseMetadata"]["HTTPHeaders"].get("x-meridian-cache") == "hit"
    assert "first@example.com" in answer_text(a)
    assert "second@example.com" in answer_text(b) and "first@example.com" not in answer_text(b)


def test_another_replica_is_answered_from_redis(replicas, fleet):
    text = "shared across replicas"
    before = len(sim_records(fleet))
    a = converse(replicas[0], "cached", text)
    b = converse(replicas[1], "cached", text)
    assert len(sim_records(fleet)) == before + 1, "the second replica reached the fleet"
    assert b["ResponseMetadata"]["HTTPHeaders"].get("x-meridian-cache") == "hit"
    assert answer_text(a) == answer_text(b)
    s = [brt(g).converse_stream(modelId="cached", messages=[{"role": "user", "content": [{"text": "redis stream"}]}])
         for g in replicas[:1]]
    first = "".join(stream_text(s[0]["stream"]))
    r = brt(replicas[1]).converse_stream(modelId="cached",
                                         messages=[{"role": "user", "content": [{"text": "redis stream"}]}])
    assert r["ResponseMetadata"]["HTTPHeaders"].get("x-meridian-cache") == "hit"
    assert "".join(stream_text(r["stream"])) == first
