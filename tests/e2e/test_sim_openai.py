"""The simulated fleet speaks Bedrock's OpenAI-compatible endpoints:
bedrock-runtime's `/openai/v1` (SigV4 `bedrock`, synchronous only, OpenAI's
open-weight models) and Mantle's `/v1` and `/openai/v1` (SigV4
`bedrock-mantle`, base IDs processed in the region called, a model only
Mantle serves), Chat Completions and Responses, plain and as server-sent
events, with the openai SDK; and it refuses what Bedrock refuses there."""
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import httpx
import openai
import pytest
from openai import OpenAI

from conftest import sim_control, sim_records

MANTLE_ONLY = "openai.gpt-5.5"


class SigV4(httpx.Auth):
    """Signs each request as the AWS SDKs do, for `service` in `region`."""

    def __init__(self, sim, service, region):
        self.creds = botocore.credentials.Credentials(sim["credentials"]["access_key_id"],
                                                      sim["credentials"]["secret_access_key"])
        self.service, self.region = service, region

    def auth_flow(self, request):
        aws = botocore.awsrequest.AWSRequest(method=request.method, url=str(request.url), data=request.content,
                                             headers={"content-type": request.headers.get("content-type", "")})
        botocore.auth.SigV4Auth(self.creds, self.service, self.region).add_auth(aws)
        for k, v in aws.headers.items():
            request.headers[k] = v
        yield request


def client(sim, region, mantle=True, path="/v1"):
    base = sim["regions"][region]["mantle_url"] + path if mantle else sim["regions"][region]["url"] + "/openai/v1"
    auth = SigV4(sim, "bedrock-mantle" if mantle else "bedrock", region)
    return OpenAI(base_url=base, api_key="unused", max_retries=0, http_client=httpx.Client(auth=auth, timeout=30))


def test_mantle_serves_a_mantle_only_model_on_both_apis_in_region(sim):
    seen = len(sim_records(sim))
    c = client(sim, "us-east-1")
    chat = c.chat.completions.create(model=MANTLE_ONLY, messages=[{"role": "user", "content": "mantle chat"}])
    assert "You said: mantle chat" in chat.choices[0].message.content and chat.usage.total_tokens > 0
    text = "".join(ch.choices[0].delta.content or "" for ch in
                   c.chat.completions.create(model=MANTLE_ONLY, stream=True,
                                             messages=[{"role": "user", "content": "mantle stream"}])
                   if ch.choices)
    assert "You said: mantle stream" in text
    r = client(sim, "us-east-1", path="/openai/v1").responses.create(model=MANTLE_ONLY, input="mantle responses")
    assert r.status == "completed" and "You said: mantle responses" in r.output_text
    kinds = [e.type for e in c.responses.create(model=MANTLE_ONLY, input="streamed", stream=True)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    records = sim_records(sim)[seen:]
    assert len(records) == 4 and all(x["inference_region"] == "us-east-1" for x in records), records
    # Mantle's model list names it where it is served, and not elsewhere.
    listed = lambda region: [m.id for m in client(sim, region).models.list()]
    assert MANTLE_ONLY in listed("us-east-1") and MANTLE_ONLY not in listed("us-west-1")


def test_runtime_openai_serves_open_weight_models_synchronously(sim):
    c = client(sim, "us-west-2", mantle=False)
    chat = c.chat.completions.create(model="openai.gpt-oss-120b-1:0",
                                     messages=[{"role": "user", "content": "runtime chat"}])
    assert "You said: runtime chat" in chat.choices[0].message.content
    r = c.responses.create(model="openai.gpt-oss-120b-1:0", input="runtime responses")
    assert "You said: runtime responses" in r.output_text
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="openai.gpt-oss-120b-1:0", input="later", background=True)
    assert "background" in e.value.message


@pytest.mark.parametrize("mantle,region,model", [
    (False, "us-east-1", MANTLE_ONLY),                       # Mantle-only, asked of bedrock-runtime
    (True, "us-west-1", MANTLE_ONLY),                        # a region whose Mantle does not serve it
    (True, "us-east-1", "anthropic.claude-opus-5-5"),        # Claude: Messages only
    (False, "us-east-1", "anthropic.claude-opus-5-5"),       # Claude has no OpenAI APIs on runtime
])
def test_a_model_on_a_surface_it_is_not_on_is_refused(sim, mantle, region, model):
    with pytest.raises(openai.NotFoundError):
        client(sim, region, mantle=mantle).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}])


def test_a_down_surface_answers_503_while_the_others_serve(sim):
    sim_control(sim, "PUT", "/regions/us-east-2/faults", {"surfaces_down": ["mantle-openai"]})
    try:
        with pytest.raises(openai.InternalServerError):
            client(sim, "us-east-2").chat.completions.create(model=MANTLE_ONLY,
                                                            messages=[{"role": "user", "content": "x"}])
    finally:
        sim_control(sim, "PUT", "/regions/us-east-2/faults", {})
    ok = client(sim, "us-east-2").chat.completions.create(model=MANTLE_ONLY, messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content
