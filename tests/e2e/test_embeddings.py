"""Embeddings through Meridian: the OpenAI SDK's /v1/embeddings (one Titan
call per input; Cohere Embed up to 96 inputs per call; answers in order,
base64 or floats) and boto3 invoke_model with Titan and Cohere bodies,
against the simulated fleet."""
import json
import math

import openai
import pytest

from conftest import fleet_gateway, gw_client, invocation_record


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("embed"), """
[models.embed]
model = "titan-embed-text-v2"

[models.cohere]
model = "cohere-embed-multilingual-v3"

[models.chat]
model = "claude-sonnet-4-5"

[logging]
sink = "file"
file = "invocations.ndjson"
""")


def client(gw):
    return openai.OpenAI(base_url=gw["url"] + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_openai_sdk_embeddings_one_and_many(gw):
    # The SDK asks for base64 by default and decodes it.
    one = client(gw).embeddings.create(model="embed", input="the quick brown fox")
    v = one.data[0].embedding
    assert len(v) == 1024 and abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3
    assert one.usage.prompt_tokens > 0 and one.model == "embed"

    texts = ["alpha", "bravo charlie", "delta echo foxtrot"]
    raw = client(gw).embeddings.with_raw_response.create(model="embed", input=texts, dimensions=256,
                                                        encoding_format="float")
    many = raw.parse()
    assert [d.index for d in many.data] == [0, 1, 2]
    assert all(len(d.embedding) == 256 for d in many.data)
    assert len({tuple(d.embedding) for d in many.data}) == 3, "one vector per input"
    # One request, one invocation record, usage summed over the three calls.
    rec = invocation_record(gw, raw.headers["x-amzn-requestid"])
    assert rec["operation"] == "InvokeModel" and rec["meridian"]["api"] == "openai"
    assert rec["input"]["inputTokenCount"] == many.usage.prompt_tokens >= 3


def test_embedding_errors_are_openai_shaped(gw):
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).embeddings.create(model="chat", input="not an embedding model")
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).embeddings.create(model="embed", input="x", dimensions=100)
    assert "dimensions" in e.value.body["message"]


def test_boto3_invoke_model_with_a_titan_body(gw):
    r = gw_client(gw).invoke_model(modelId="embed", body=json.dumps({"inputText": "hello", "dimensions": 512}))
    out = json.loads(r["body"].read())
    assert len(out["embedding"]) == 512 and out["inputTextTokenCount"] > 0


def test_cohere_batches_96_inputs_per_call(sim, gw):
    from conftest import sim_records
    seen = len(sim_records(sim))
    texts = [f"document number {i}" for i in range(100)]
    raw = client(gw).embeddings.with_raw_response.create(model="cohere", input=texts, encoding_format="float")
    out = raw.parse()
    assert [d.index for d in out.data] == list(range(100))
    assert all(len(d.embedding) == 1024 for d in out.data)
    assert len({tuple(d.embedding) for d in out.data}) == 100, "one vector per input"
    calls = [r for r in sim_records(sim)[seen:] if r["model_id"].startswith("cohere.")]
    assert len(calls) == 2, calls
    rec = invocation_record(gw, raw.headers["x-amzn-requestid"])
    assert rec["input"]["inputTokenCount"] == out.usage.prompt_tokens >= 100
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).embeddings.create(model="cohere", input="x", dimensions=256)
    assert e.value.body["param"] == "dimensions"


def test_boto3_invoke_model_with_a_cohere_body(gw):
    body = {"texts": ["hola", "hello"], "input_type": "search_query", "embedding_types": ["float"]}
    r = gw_client(gw).invoke_model(modelId="cohere", body=json.dumps(body))
    out = json.loads(r["body"].read())
    assert out["response_type"] == "embeddings_by_type"
    assert [len(v) for v in out["embeddings"]["float"]] == [1024, 1024]
    assert int(r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"]) > 0
