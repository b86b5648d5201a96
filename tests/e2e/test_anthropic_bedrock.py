"""The anthropic SDK's Bedrock clients against Meridian, with inbound
authentication on: `AnthropicBedrockMantle` (Bearer API key, and SigV4 scoped
to `bedrock-mantle`, on `/anthropic/v1/messages` with a Mantle model ID) and
`AnthropicBedrock` (SigV4 `bedrock`, InvokeModel paths), each plain and
streaming, with adaptive thinking and tools."""
import anthropic
import pytest
from anthropic import AnthropicBedrock, AnthropicBedrockMantle

from conftest import serve_with

KEY_ID, SECRET, API_KEY = "AKIDMANTLE", "mantle-secret", "mk-mantle-0123456789abcdef"
TOOLS = [{"name": "get_weather", "description": "weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
THINK = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    yield from serve_with(tmp_path_factory.mktemp("mantle"), f"""
region = "us-east-1"
[upstream]
mode = "simulated"
[auth]
credentials = [{{ access_key_id = "{KEY_ID}", secret_access_key = "{SECRET}" }}]
api_keys = ["{API_KEY}"]
""")


def mantle_clients(url):
    base = url + "/anthropic"
    return {
        "bearer": AnthropicBedrockMantle(api_key=API_KEY, base_url=base, aws_region="us-east-1", max_retries=0),
        "sigv4": AnthropicBedrockMantle(aws_access_key=KEY_ID, aws_secret_key=SECRET, base_url=base,
                                        aws_region="us-east-1", max_retries=0),
    }


def round_trip(client, model):
    """Plain with a tool call and thinking, its result back, then a stream."""
    m = client.messages.create(model=model, max_tokens=2000, tools=TOOLS, extra_body=THINK,
                               messages=[{"role": "user", "content": "use get_weather for Paris"}])
    assert m.stop_reason == "tool_use", m
    kinds = [b.type for b in m.content]
    assert "thinking" in kinds and "tool_use" in kinds, kinds
    call = next(b for b in m.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "sim-city"}
    follow = client.messages.create(model=model, max_tokens=2000, tools=TOOLS, extra_body=THINK, messages=[
        {"role": "user", "content": "use get_weather for Paris"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert "Tool result: sunny" in follow.content[-1].text, follow
    events = []
    with client.messages.stream(model=model, max_tokens=2000, extra_body=THINK,
                                messages=[{"role": "user", "content": "stream it"}]) as s:
        for e in s:
            events.append(e.type if e.type != "content_block_delta" else e.delta.type)
        final = s.get_final_message()
    assert "thinking_delta" in events and "text_delta" in events and events[-1] == "message_stop", events
    assert "You said: stream it" in final.content[-1].text
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("auth", ["bearer", "sigv4"])
def test_anthropic_bedrock_mantle(url, auth):
    round_trip(mantle_clients(url)[auth], "anthropic.claude-opus-5-5")


def test_anthropic_bedrock_mantle_with_wrong_credentials_is_refused(url):
    for client in (AnthropicBedrockMantle(api_key="mk-wrong", base_url=url + "/anthropic",
                                          aws_region="us-east-1", max_retries=0),
                   AnthropicBedrockMantle(aws_access_key=KEY_ID, aws_secret_key="wrong", base_url=url + "/anthropic",
                                          aws_region="us-east-1", max_retries=0)):
        with pytest.raises(anthropic.APIStatusError) as e:
            client.messages.create(model="anthropic.claude-opus-5-5", max_tokens=10,
                                   messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code in (401, 403), e.value


def test_anthropic_bedrock(url):
    client = AnthropicBedrock(aws_access_key=KEY_ID, aws_secret_key=SECRET, aws_region="us-east-1",
                              base_url=url, max_retries=0)
    round_trip(client, "us.anthropic.claude-opus-5-5")


LEGACY = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_an_arn_versioned_model_is_never_sent_a_version_it_refuses(sim, url):
    """The SDK sends `anthropic_version: 2026-10-21` in InvokeModel bodies,
    which Bedrock refuses for the ARN-versioned models (Opus 4.6 and earlier):
    the fleet refuses it as Bedrock does, and Meridian sends those models the
    version they take."""
    direct = AnthropicBedrock(aws_access_key=sim["credentials"]["access_key_id"],
                              aws_secret_key=sim["credentials"]["secret_access_key"], aws_region="us-east-1",
                              base_url=sim["regions"]["us-east-1"]["url"], max_retries=0)
    ask = {"max_tokens": 20, "messages": [{"role": "user", "content": "which version"}]}
    with pytest.raises(anthropic.BadRequestError) as e:
        direct.messages.create(model=LEGACY, **ask)
    assert "2026-10-21" in str(e.value)
    # A model without an ARN version takes it.
    assert direct.messages.create(model="us.anthropic.claude-opus-4-7", **ask).content
    # Through Meridian, the legacy model is served, plain and streaming.
    via = AnthropicBedrock(aws_access_key=KEY_ID, aws_secret_key=SECRET, aws_region="us-east-1",
                           base_url=url, max_retries=0)
    assert "You said: which version" in via.messages.create(model=LEGACY, **ask).content[-1].text
    with via.messages.stream(model=LEGACY, **ask) as s:
        assert "You said: which version" in s.get_final_text()
    # An empty conversation is refused, as Bedrock and Anthropic refuse it.
    for client, model in ((direct, "us.anthropic.claude-opus-4-7"), (via, LEGACY)):
        with pytest.raises(anthropic.BadRequestError) as e:
            client.messages.create(model=model, max_tokens=20, messages=[])
        assert "minimum item count" in str(e.value)
