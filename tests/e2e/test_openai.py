"""The OpenAI Python SDK against Meridian's /v1."""
import json

import openai
import pytest

from conftest import put_faults

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def client(gw):
    return openai.OpenAI(base_url=gw["url"] + "/v1", api_key="not-checked-without-auth-config", max_retries=0, timeout=30)


def test_chat_completion(gateway):
    r = client(gateway).chat.completions.create(
        model="chat", max_completion_tokens=60,
        messages=[{"role": "developer", "content": "be terse"}, {"role": "user", "content": "hello openai"}])
    text = r.choices[0].message.content
    assert "You said: hello openai" in text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == len(text.split())
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.object == "chat.completion" and r.model == "chat"


def test_streaming_with_usage(gateway):
    stream = client(gateway).chat.completions.create(
        model="chat", max_tokens=10, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream openai"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Simulated reply from")
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].usage.completion_tokens == 10 and chunks[-1].choices == []


def test_tool_calls(gateway):
    c = client(gateway)
    msgs = [{"role": "user", "content": "use get_weather for Paris"}]
    r = c.chat.completions.create(model="chat", messages=msgs, tools=TOOLS, tool_choice="auto")
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "sim-city"}
    msgs += [r.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"}]
    r2 = c.chat.completions.create(model="chat", messages=msgs, tools=TOOLS)
    assert r2.choices[0].finish_reason == "stop"
    assert "Tool result: 21 degrees" in r2.choices[0].message.content


def test_streamed_tool_calls(gateway):
    stream = client(gateway).chat.completions.create(
        model="chat", stream=True, tools=TOOLS, messages=[{"role": "user", "content": "get_weather?"}])
    args, names = "", []
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if tc.function.name:
                names.append(tc.function.name)
            args += tc.function.arguments or ""
    assert names == ["get_weather"] and json.loads(args) == {"city": "sim-city"}


def test_models_and_errors(gateway):
    c = client(gateway)
    assert {m.id for m in c.models.list()} == {"chat", "haiku"}
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="chat", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="chat", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])


def test_images_as_data_urls(gateway):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    r = client(gateway).chat.completions.create(model="chat", messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert "You said: describe" in r.choices[0].message.content


def test_stream_failure_is_an_sse_error(gateway, sim):
    regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2"]
    for region in regions:
        put_faults(sim, region, {"cut_after_events": 3})
    try:
        stream = client(gateway).chat.completions.create(
            model="chat", stream=True, messages=[{"role": "user", "content": "cut"}])
        got = []
        with pytest.raises(openai.APIError) as e:
            for c in stream:
                got.append(c)
        assert "ModelStreamErrorException" in str(e.value)
        assert got, "chunks before the failure reach the client"
    finally:
        for region in regions:
            put_faults(sim, region, {})
