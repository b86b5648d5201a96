"""langchain-aws ChatBedrockConverse against Meridian's Bedrock endpoint."""
from langchain_aws import ChatBedrockConverse
from langchain_core.tools import tool

from conftest import APP_PROFILE

SONNET_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def llm(gw, model=SONNET_US, **kw):
    return ChatBedrockConverse(model=model, region_name="us-east-1", endpoint_url=gw["url"],
                               aws_access_key_id="AKIDLANGCHAIN", aws_secret_access_key="langchain-secret",
                               max_tokens=60, **kw)


def test_invoke(gateway):
    r = llm(gateway).invoke("hello langchain")
    assert "You said: hello langchain" in r.content
    assert r.usage_metadata["output_tokens"] == len(r.content.split())
    assert r.response_metadata["stopReason"] == "end_turn"


def test_stream(gateway):
    chunks = list(llm(gateway).stream("stream langchain"))
    text = "".join(str(c.text) for c in chunks)
    assert "You said: stream langchain" in text
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] > 0


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def test_tool_calling(gateway):
    r = llm(gateway).bind_tools([get_weather]).invoke("what is the weather in Paris? use get_weather")
    assert r.tool_calls[0]["name"] == "get_weather"
    assert r.tool_calls[0]["args"] == {"city": "sim-city"}
    assert r.response_metadata["stopReason"] == "tool_use"


def test_application_inference_profile(gateway):
    r = llm(gateway, model=APP_PROFILE, provider="anthropic").invoke("via application profile")
    assert "You said: via application profile" in r.content
