"""The Anthropic Python SDK against Meridian's /v1/messages, with a tenant key."""
import base64
import struct
import zlib

import anthropic
import pytest

from conftest import fleet_gateway, key_hash, put_faults, sim_records

KEY = "mk-e2e-anthropic-tenant-key-000000001"
EU_KEY = "mk-e2e-anthropic-eu-tenant-key-000001"
TOOLS = [{"name": "get_weather", "description": "weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("anthropic"), f"""
[models.chat]
model = "claude-sonnet-4-5"

[models.nova]
model = "nova-pro"

[tenants.apps]
api_keys = ["{key_hash(KEY)}"]

[tenants.eu]
api_keys = ["{key_hash(EU_KEY)}"]
residency = ["eu"]
""")


def client(gw, key=KEY):
    return anthropic.Anthropic(base_url=gw["url"], api_key=key, max_retries=0, timeout=30)


def png():
    """A 1×1 white PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00\xff\xff\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_create_with_a_tenant_key(gw):
    r = client(gw).messages.with_raw_response.create(
        model="chat", max_tokens=40, system="be terse",
        messages=[{"role": "user", "content": "hello anthropic"}])
    assert r.headers["request-id"] and r.headers["x-meridian-region"].startswith("us-")
    m = r.parse()
    assert m.type == "message" and m.role == "assistant" and m.model == "chat"
    assert "You said: hello anthropic" in m.content[0].text
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    assert m.stop_reason in ("end_turn", "max_tokens")


def test_anthropic_api_model_names_resolve(gw):
    # What the SDKs' examples and Claude Code send: Anthropic's dated names.
    r = client(gw).messages.with_raw_response.create(
        model="claude-haiku-4-5-20251001", max_tokens=8, messages=[{"role": "user", "content": "dated"}])
    m = r.parse()
    assert m.model == "claude-haiku-4-5-20251001" and "You said: dated" in m.content[0].text


def test_stream_text(gw):
    with client(gw).messages.stream(model="chat", max_tokens=12,
                                    messages=[{"role": "user", "content": "stream anthropic"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.startswith("Simulated reply from")
    assert final.content[0].text == text and final.usage.output_tokens == 12
    assert final.stop_reason == "max_tokens"


def test_stream_tool_use_with_streamed_json_input(gw):
    kinds = []
    with client(gw).messages.stream(model="chat", max_tokens=200, tools=TOOLS,
                                    messages=[{"role": "user", "content": "get_weather for Paris?"}]) as s:
        for event in s:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = s.get_final_message()
    assert "input_json_delta" in kinds
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "sim-city"}
    assert final.stop_reason == "tool_use"
    # The tool result goes back on the next turn.
    m = client(gw).messages.create(model="chat", max_tokens=40, tools=TOOLS, messages=[
        {"role": "user", "content": "get_weather for Paris?"},
        {"role": "assistant", "content": [b.model_dump() for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert m.content[0].type == "text"


def test_count_tokens_and_an_image(gw):
    n = client(gw).messages.count_tokens(model="chat", messages=[{"role": "user", "content": "count these words"}])
    assert n.input_tokens > 0
    image = base64.b64encode(png()).decode()
    m = client(gw).messages.create(model="chat", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
        {"type": "text", "text": "what is this"}]}])
    assert m.content[0].text


def test_errors_in_anthropic_shape(gw):
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(gw, "mk-not-a-key-of-this-meridian-000001").messages.create(
            model="chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        client(gw).messages.create(model="claude-nonexistent-9", max_tokens=5,
                                   messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    assert e.value.response.headers["request-id"]
    with pytest.raises(anthropic.BadRequestError) as e:
        client(gw).messages.create(model="chat", max_tokens=-1, messages=[{"role": "user", "content": "x"}])
    assert "max_tokens" in e.value.body["error"]["message"]


def test_unknown_beta_flags_are_dropped_and_named(gw):
    r = client(gw).messages.with_raw_response.create(
        model="chat", max_tokens=5, messages=[{"role": "user", "content": "beta"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14,made-up-beta-2099-01-01"})
    assert r.headers["x-meridian-dropped-betas"] == "made-up-beta-2099-01-01"
    assert r.parse().content


def test_thinking_settings_are_left_out_for_a_model_that_does_not_reason(gw):
    """Claude Code sends thinking settings whatever the model; Nova does not
    reason, so they are left out (and named) instead of refused by Bedrock."""
    r = client(gw).messages.with_raw_response.create(
        model="nova", max_tokens=20, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "no thinking"}])
    assert r.headers["x-meridian-dropped-fields"] == "thinking"
    assert "You said: no thinking" in r.parse().content[-1].text


def test_an_eu_tenant_is_processed_in_the_eu(sim, gw):
    seen = len(sim_records(sim))
    m = client(gw, EU_KEY).messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "eu"}])
    assert m.content
    with client(gw, EU_KEY).messages.stream(model="chat", max_tokens=5,
                                            messages=[{"role": "user", "content": "eu"}]) as s:
        s.get_final_message()
    where = {r.get("inference_region") or r["endpoint_region"] for r in sim_records(sim)[seen:]}
    assert where and all(w.startswith("eu-") for w in where), where


US = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]


def test_stream_failover_before_the_first_event_is_invisible(sim, gw):
    # The first-choice region refuses connections: another serves, the client sees one clean stream.
    put_faults(sim, "us-east-1", {"outage": True})
    try:
        with client(gw).messages.stream(model="chat", max_tokens=8,
                                        messages=[{"role": "user", "content": "failover"}]) as s:
            text = "".join(s.text_stream)
            raw = s.response
        assert text.startswith("Simulated reply from") and "us-east-1" not in text
        assert raw.headers["x-meridian-route"].startswith("first:us-east-1:connection_refused,")
    finally:
        put_faults(sim, "us-east-1", {})


def test_a_stream_broken_after_its_first_event_ends_with_an_error_event(sim, gw):
    for region in US:
        put_faults(sim, region, {"cut_after_events": 3})
    try:
        got = []
        with pytest.raises(anthropic.APIStatusError) as e:
            with client(gw).messages.stream(model="chat", max_tokens=50,
                                            messages=[{"role": "user", "content": "cut"}]) as s:
                for event in s:
                    got.append(event.type)
        assert got and got[0] == "message_start", got
        assert e.value.body["error"]["type"] in ("api_error", "overloaded_error"), e.value.body
    finally:
        for region in US:
            put_faults(sim, region, {})


def test_other_models_are_translated_to_converse(sim, gw):
    """Nova has no native Messages format on Bedrock: the request goes out
    as Converse and the answer comes back in Anthropic's shape."""
    c = client(gw)
    seen = len(sim_records(sim))
    m = c.messages.create(model="nova", max_tokens=40, system="be terse", stop_sequences=["STOP"],
                          messages=[{"role": "user", "content": "hello nova"}])
    assert m.type == "message" and m.model == "nova"
    assert "You said: hello nova" in m.content[0].text
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0 and m.stop_reason == "end_turn"
    ops = {r["operation"] for r in sim_records(sim)[seen:]}
    assert ops == {"Converse"}, ops

    # Streamed tool use: the JSON input arrives as input_json_delta, then the result goes back.
    kinds = []
    with c.messages.stream(model="nova", max_tokens=200, tools=TOOLS,
                           messages=[{"role": "user", "content": "get_weather for Paris?"}]) as s:
        for event in s:
            kinds.append(event.type if event.type != "content_block_delta" else event.delta.type)
        final = s.get_final_message()
    assert "input_json_delta" in kinds and kinds[-1] == "message_stop", kinds
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.input == {"city": "sim-city"} and final.stop_reason == "tool_use"
    image = base64.b64encode(png()).decode()
    m = c.messages.create(model="nova", max_tokens=40, tools=TOOLS, messages=[
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                                     {"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": [b.model_dump() for b in final.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert "Tool result: sunny" in m.content[0].text
    assert c.messages.count_tokens(model="nova", messages=[{"role": "user", "content": "count me"}]).input_tokens > 0

    # What Converse cannot carry is a clear 400 (thinking, which Nova does
    # not do, is left out and named: see below).
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="nova", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}}]}])
    assert "base64" in e.value.body["error"]["message"]
