"""Inbound authentication when meridian.toml names credentials and API keys."""
import boto3
import botocore
import openai
import pytest

from conftest import NO_RETRY, serve_with

KEY_ID, SECRET, API_KEY = "AKIDTEAMSEARCH", "team-search-secret", "mk-0123456789abcdef0123"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    yield from serve_with(tmp_path_factory.mktemp("auth"), f"""
region = "eu-west-3"
[upstream]
mode = "simulated"
[auth]
credentials = [{{ access_key_id = "{KEY_ID}", secret_access_key = "{SECRET}" }}]
api_keys = ["{API_KEY}"]
""")


def rt(url, secret):
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="eu-west-3",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=secret, config=NO_RETRY)


MSG = [{"role": "user", "content": [{"text": "secured"}]}]


def test_sigv4_is_verified(secured):
    r = rt(secured, SECRET).converse(modelId="claude-haiku-4-5", messages=MSG)
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"].startswith("eu-")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        rt(secured, "wrong").converse(modelId="claude-haiku-4-5", messages=MSG)
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    other = boto3.client("bedrock-runtime", endpoint_url=secured, region_name="eu-west-3",
                         aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key=SECRET, config=NO_RETRY)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        other.converse(modelId="claude-haiku-4-5", messages=MSG)
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_bearer_api_keys(secured):
    # botocore only sends bearer tokens over HTTPS, so this speaks HTTP directly.
    import json
    import urllib.request

    def call(key):
        req = urllib.request.Request(secured + "/model/claude-haiku-4-5/converse", method="POST",
                                     data=json.dumps({"messages": MSG}).encode(),
                                     headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
        return urllib.request.urlopen(req, timeout=10)

    assert json.loads(call(API_KEY).read())["stopReason"] == "end_turn"
    with pytest.raises(urllib.error.HTTPError) as e:
        call("mk-wrong-key-000000000")
    assert e.value.code == 403
    assert e.value.headers["x-amzn-errortype"].startswith("AccessDeniedException")


def test_openai_api_keys(secured):
    ok = openai.OpenAI(base_url=secured + "/v1", api_key=API_KEY, max_retries=0)
    assert ok.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}]).choices
    bad = openai.OpenAI(base_url=secured + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
