"""The OpenAI Responses API on `/v1/responses` with the openai SDK, through
`meridian serve` calling the standalone fleet: plain and streamed answers,
`previous_response_id` across a region failover (the stored conversation,
a reasoning item included, reaches the next region), `text.format`
json_schema, reasoning items round-tripped without stored state, and
stored responses that are the tenant's own, inside the request's residency
policy, and gone after their TTL (in memory and in Redis)."""
import base64
import json

import openai
import pytest
from openai import OpenAI

from conftest import fleet_gateway, key_hash, put_faults, sim_records, wait_for

KEY_A = "mk-responses-tenant-a-0000001"
KEY_B = "mk-responses-tenant-b-0000001"
KEY_G = "mk-responses-tenant-g-0000001"

TENANTS = f"""
[models.chat]
model = "claude-sonnet-4-5"

[tenants.a]
api_keys = ["{key_hash(KEY_A)}"]

[tenants.b]
api_keys = ["{key_hash(KEY_B)}"]

[guards.pii]
email = "mask"

[tenants.g]
api_keys = ["{key_hash(KEY_G)}"]
guard = "pii"
"""


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("responses"), TENANTS + "\n[responses]\nstore = true\n")


def client(gw, key=KEY_A, **headers):
    return OpenAI(base_url=gw["url"] + "/v1", api_key=key, max_retries=0, default_headers=headers)


def test_plain_answers_are_response_objects_kept_for_get_and_input_items(gw):
    c = client(gw)
    r = c.responses.create(model="chat", instructions="be brief", input="hello responses",
                           metadata={"ticket": "T-1"})
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed", r
    assert r.output_text.startswith("Simulated reply from "), r.output_text
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
    assert r.metadata == {"ticket": "T-1"} and r.instructions == "be brief" and r.store is True
    got = c.responses.retrieve(r.id)
    assert got.output_text == r.output_text and got.id == r.id
    items = c.responses.input_items.list(r.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["hello responses"], items
    assert c.responses.delete(r.id) is None
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_streamed_events_come_in_the_apis_order(gw):
    c = client(gw)
    kinds, text = [], ""
    for e in c.responses.create(model="chat", input="stream me please", stream=True):
        kinds.append(e.type)
        if e.type == "response.output_text.delta":
            text += e.delta
        if e.type == "response.completed":
            final = e.response
    assert kinds[:2] == ["response.created", "response.in_progress"], kinds
    assert kinds[-1] == "response.completed", kinds
    order = [k for k in kinds if k in ("response.output_item.added", "response.output_text.delta",
                                       "response.output_text.done", "response.output_item.done")]
    assert order[0] == "response.output_item.added" and order[-1] == "response.output_item.done", order
    assert final.output_text == text and text.startswith("Simulated reply"), (final, text)
    assert final.usage.total_tokens > 0
    # A streamed response is stored before the client reads that it completed.
    assert c.responses.retrieve(final.id).output_text == text


def test_previous_response_id_continues_in_another_region_with_its_reasoning(gw, sim):
    c = client(gw)
    raw = c.responses.with_raw_response.create(model="chat", input="my name is Ada", reasoning={"effort": "low"})
    first, region = raw.parse(), raw.headers["x-meridian-region"]
    reasoning = [o for o in first.output if o.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content and reasoning[0].summary, first.output
    put_faults(sim, region, {"outage": True})
    try:
        seen = len(sim_records(sim))
        raw = c.responses.with_raw_response.create(model="chat", input="what is my name?",
                                                   previous_response_id=first.id, reasoning={"effort": "low"})
        second = raw.parse()
    finally:
        put_faults(sim, region, {})
    assert raw.headers["x-meridian-region"] != region, "served in the region that is down"
    assert second.previous_response_id == first.id and second.status == "completed"
    # The next region got the whole conversation: the first turn, its answer
    # and its signed reasoning (the fleet refuses a reasoning block whose
    # signature does not match).
    served = [r for r in sim_records(sim)[seen:] if r["outcome"] == "success"]
    assert served, sim_records(sim)[seen:]
    prompt = served[-1]["prompt"]
    assert "my name is Ada" in prompt and "what is my name?" in prompt, prompt
    assert first.output_text.split()[0] in prompt, prompt


def test_reasoning_items_round_trip_without_stored_state(gw):
    c = client(gw)
    first = c.responses.create(model="chat", input="think first", reasoning={"effort": "low", "summary": "auto"},
                               store=False, include=["reasoning.encrypted_content"])
    assert first.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(first.id)
    items = [{"role": "user", "content": "think first"}]
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"role": "user", "content": "and again"})
    again = c.responses.create(model="chat", input=items, reasoning={"effort": "low"}, store=False)
    assert again.status == "completed", again
    # A reasoning item whose content was damaged is refused by Meridian.
    damaged = [dict(i) for i in items]
    for i in damaged:
        if i.get("type") == "reasoning":
            i["encrypted_content"] = i["encrypted_content"][:-8] + "AAAAAAAA"
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat", input=damaged, reasoning={"effort": "low"}, store=False)
    assert e.value.body["param"].endswith("encrypted_content"), e.value.body
    # One whose text was changed reaches the model, which refuses it as
    # Bedrock does: the signature no longer matches.
    changed = [dict(i) for i in items]
    for i in changed:
        if i.get("type") == "reasoning":
            prefix, body = i["encrypted_content"][:len("meridian.r1.")], i["encrypted_content"][len("meridian.r1."):]
            block = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            block["reasoningText"]["text"] += " (edited)"
            i["encrypted_content"] = prefix + base64.urlsafe_b64encode(json.dumps(block).encode()).decode().rstrip("=")
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat", input=changed, reasoning={"effort": "low"}, store=False)
    assert "signature" in e.value.message, e.value.message


def test_text_format_json_schema_answers_json_of_the_schema(gw):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["name", "population"], "additionalProperties": False}
    r = client(gw).responses.create(model="chat", input="a city, as JSON",
                                    text={"format": {"type": "json_schema", "name": "city", "schema": schema,
                                                     "strict": True}})
    v = json.loads(r.output_text)
    assert set(v) == {"name", "population"} and isinstance(v["population"], int), v
    assert r.text.format.type == "json_schema"


def test_a_stored_response_is_its_tenants_and_stays_inside_the_policy(gw):
    a, b = client(gw), client(gw, KEY_B)
    raw = a.responses.with_raw_response.create(model="chat", input="tenant a's secret")
    r, region = raw.parse(), raw.headers["x-meridian-region"]
    assert region.startswith("us-"), region
    # Another tenant's key finds nothing: not to read, not to continue, not to delete.
    with pytest.raises(openai.NotFoundError):
        b.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.create(model="chat", input="continue", previous_response_id=r.id)
    with pytest.raises(openai.NotFoundError):
        b.responses.delete(r.id)
    # An EU-only request finds nothing processed in the US.
    eu = client(gw, **{"x-meridian-residency": "eu"})
    with pytest.raises(openai.NotFoundError):
        eu.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        eu.responses.create(model="chat", input="continue", previous_response_id=r.id)
    with pytest.raises(openai.NotFoundError):
        eu.responses.input_items.list(r.id)
    assert a.responses.retrieve(r.id).output_text == r.output_text


def test_bad_requests_are_openai_shaped(gw):
    c = client(gw)
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat", input="x", tools=[{"type": "file_search", "vector_store_ids": ["v"]}],
                           tool_choice={"type": "file_search"})
    assert "file_search" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat", input="x", background=True)
    assert e.value.body["param"] == "background"
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve("resp_00000000000000000000000000000000")


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_stored_response_expires_after_its_ttl(sim, tmp_path, redis, backend):
    state = f'\n[state]\nbackend = "redis"\nurl = "{redis.url}"\n' if backend == "redis" else ""
    toml = TENANTS + '\n[responses]\nstore = true\nttl = "2s"\n' + state
    for g in fleet_gateway(sim, tmp_path, toml):
        c = client(g)
        r = c.responses.create(model="chat", input="short-lived")
        assert c.responses.retrieve(r.id).id == r.id

        def gone():
            try:
                c.responses.retrieve(r.id)
                return False
            except openai.NotFoundError:
                return True
        wait_for(gone, 15, f"the response to expire ({backend})")


def test_what_is_stored_is_guarded_as_what_went_upstream(gw, sim):
    c = client(gw, KEY_G)
    seen = len(sim_records(sim))
    r = c.responses.create(model="chat", input="write to grace@example.com today")
    assert all("grace@example.com" not in x["prompt"] for x in sim_records(sim)[seen:])
    kept = c.responses.input_items.list(r.id).data[0].content[0].text
    assert "grace@example.com" not in kept and "[EMAIL]" in kept, kept
