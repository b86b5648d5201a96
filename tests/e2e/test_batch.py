"""Batch inference through Meridian against the simulated fleet's batch jobs
and a real S3-compatible server (moto's): the openai SDK's files and batches
(150 lines, one malformed), the anthropic SDK's Message Batches, boto3's
create_model_invocation_job; an EU-only tenant kept in the EU (and failed
with every EU region refusing jobs, nothing uploaded elsewhere); a budget
that refuses a batch before upload and a finished batch settled at the batch
price; a replica killed mid-batch and another one finishing it."""
import io
import json
import time
import urllib.request

import anthropic
import boto3
import openai
import pytest

from conftest import (NO_RETRY, Redis, key_hash, put_faults, run_sim, sim_client, sim_control, start_fleet_gateway,
                      wait_for)
from test_operations import S3_CREDS, Moto

BUCKETS = {"us-east-1": "batch-use1", "eu-west-1": "batch-euw1", "eu-central-1": "batch-euc1"}
US_KEY = "mk-batch-us-00000000000000000001"
EU_KEY = "mk-batch-eu-00000000000000000001"
CENTS_KEY = "mk-batch-cents-000000000000000001"
GUARDED_KEY = "mk-batch-guarded-0000000000000001"
EMAIL, CARD, IBAN = "jane.doe@example.com", "4111111111111111", "DE89370400440532013000"
ADMIN_KEY = "mk-batch-admin-000000000000000001"
US_CREDS = ("AKIDBATCHUSTENANT", "batch-us-tenant-secret")
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ROLE = "arn:aws:iam::123456789012:role/meridian-batch"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    m = Moto(tmp_path_factory.mktemp("moto"))
    m.start()
    for region, bucket in BUCKETS.items():
        s3 = boto3.client("s3", endpoint_url=m.url, region_name=region, **CREDS)
        conf = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **conf)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def fleet(moto, tmp_path_factory):
    yield from run_sim(tmp_path_factory.mktemp("batchsim"), "us-east-1,us-west-2,eu-west-1,eu-central-1", 11,
                       "--s3-endpoint", moto.url, "--batch-job-ms", "2500")


def toml(moto_url, redis_url=None):
    buckets = ", ".join(f'"{r}" = "{b}"' for r, b in BUCKETS.items())
    state = f'\n[state]\nbackend = "redis"\nurl = "{redis_url}"\n' if redis_url else ""
    return f"""
[models.haiku]
model = "claude-3-haiku"

[tenants.us]
api_keys = ["{key_hash(US_KEY)}"]
credentials = [{{ access_key_id = "{US_CREDS[0]}", secret_access_key = "{US_CREDS[1]}" }}]
residency = ["us"]

[tenants.eu]
api_keys = ["{key_hash(EU_KEY)}"]
residency = ["eu"]

[tenants.cents]
api_keys = ["{key_hash(CENTS_KEY)}"]
residency = ["us"]
budget_usd_per_day = 0.0005

[tenants.guarded]
api_keys = ["{key_hash(GUARDED_KEY)}"]
residency = ["us"]
guard = "pii"

[guards.pii]
email = "anonymize"
card = "block"
iban = "mask"

[admin]
key_hash = "{key_hash(ADMIN_KEY)}"

[logging]
sink = "file"
file = "invocations.ndjson"

[batch]
buckets = {{ {buckets} }}
role_arn = "{ROLE}"
s3_endpoint = "{moto_url}"
poll_interval = "300ms"
max_active_per_tenant = 1
{state}"""


def gateway(fleet, moto, d, redis_url=None):
    """A gateway calling the fleet with its profile; the batch buckets are written with the
    default profile's credential (moto's)."""
    creds = fleet["credentials"]
    (d / "both-credentials").write_text(
        f"[fleet]\naws_access_key_id = {creds['access_key_id']}\naws_secret_access_key = {creds['secret_access_key']}\n"
        f"[default]\naws_access_key_id = {S3_CREDS['AWS_ACCESS_KEY_ID']}\n"
        f"aws_secret_access_key = {S3_CREDS['AWS_SECRET_ACCESS_KEY']}\n")
    return start_fleet_gateway(fleet, d, toml(moto.url, redis_url),
                               env={"AWS_SHARED_CREDENTIALS_FILE": str(d / "both-credentials")})


@pytest.fixture(scope="module")
def gw(fleet, moto, tmp_path_factory):
    g = gateway(fleet, moto, tmp_path_factory.mktemp("batchgw"))
    yield g
    g["proc"].stop()


def objects(moto):
    """Every object in every batch bucket: bucket → keys."""
    s3 = moto.s3()
    return {b: [o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])] for b in BUCKETS.values()}


def jobs(fleet):
    return sim_control(fleet, "GET", "/batch-jobs")


def batch_records(fleet, model_prefix="anthropic.claude-3-haiku"):
    return [r for r in sim_control(fleet, "GET", "/records")
            if r["operation"] == "ModelInvocationJob" and r["model_id"].startswith(model_prefix)]


def chat_lines(n, tag, malformed_at=None):
    out = []
    for i in range(n):
        if i == malformed_at:
            out.append('{"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions", "body": {')
            continue
        out.append(json.dumps({"custom_id": f"{tag}-{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "haiku", "max_tokens": 16,
                                        "messages": [{"role": "user", "content": f"{tag} line {i}"}]}}))
    return ("\n".join(out) + "\n").encode()


def oa(gw, key):
    return openai.OpenAI(base_url=gw["url"] + "/v1", api_key=key, max_retries=0, timeout=30)


def wait_batch(client, batch_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "cancelled", "expired"):
            return b
        time.sleep(0.5)
    raise TimeoutError(f"batch {batch_id} did not end: {b}")


def usage(gw, tenant):
    req = urllib.request.Request(gw["url"] + "/admin/usage", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = json.loads(r.read())
    return next(t for t in body["tenants"] if t["name"] == tenant)


def test_openai_batch_runs_in_the_one_allowed_region_with_a_malformed_line_in_the_error_file(gw, fleet, moto):
    c = oa(gw, US_KEY)
    f = c.files.create(file=("in.jsonl", io.BytesIO(chat_lines(150, "us", malformed_at=37))), purpose="batch")
    assert f.purpose == "batch" and f.bytes > 0
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                         metadata={"team": "e2e"})
    assert b.status in ("validating", "in_progress"), b.errors
    assert b.request_counts.total == 150
    b = wait_batch(c, b.id)
    assert b.status == "completed", (b.errors, b.request_counts)
    assert b.request_counts.completed == 149 and b.request_counts.failed == 1, b.request_counts
    out = [json.loads(line) for line in c.files.content(b.output_file_id).text.splitlines()]
    errors = [json.loads(line) for line in c.files.content(b.error_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in out) == sorted(f"us-{i}" for i in range(150) if i != 37)
    for o in out:
        body = o["response"]["body"]
        assert o["response"]["status_code"] == 200 and body["object"] == "chat.completion", o
        assert body["choices"][0]["message"]["content"] and body["usage"]["prompt_tokens"] > 0
    assert len(errors) == 1 and errors[0]["error"]["code"] == "invalid_json", errors
    # The fleet processed every line in us-east-1 (the one US region with a bucket), and S3 holds
    # objects only in that region's bucket.
    job = next(j for j in jobs(fleet) if j["jobName"] == f"meridian-{b.id}".replace("_", ""))
    assert job["region"] == "us-east-1" and job["totalRecordCount"] == 149, job
    recs = [r for r in batch_records(fleet) if "us line " in (r.get("prompt") or "")]
    assert len(recs) == 149 and {r["inference_region"] for r in recs} == {"us-east-1"}, \
        (len(recs), {r["inference_region"] for r in recs})
    keys = objects(moto)
    assert any(b.id in k for k in keys["batch-use1"]), keys
    assert not any(b.id in k for k in keys["batch-euw1"] + keys["batch-euc1"]), keys
    # Another tenant finds neither the batch nor its files.
    other = oa(gw, EU_KEY)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(b.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(b.output_file_id)
    listed = [x.id for x in c.batches.list(limit=100)]
    assert b.id in listed
    # One invocation record per processed line, written once, by the replica that settled it.
    wait_for(lambda: len(batch_log(gw, b.id)) == 149, 10, "the batch's invocation records")
    log = batch_log(gw, b.id)
    assert {r["inferenceRegion"] for r in log} == {"us-east-1"}, log[0]
    assert {r["meridian"]["tenant"] for r in log} == {"us"} and all(r["output"]["outputTokenCount"] > 0 for r in log)
    assert f"{b.id}/us-0" in {r["requestId"] for r in log}


def batch_log(gw, batch_id):
    path = gw["dir"] / "invocations.ndjson"
    if not path.exists():
        return []
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in recs if r["operation"] == "ModelInvocationJob" and r["requestId"].startswith(batch_id)]


def test_every_line_passes_the_guards_before_upload(gw, fleet):
    c = oa(gw, GUARDED_KEY)
    lines = [f"write to {EMAIL} please", f"my card is {CARD}", f"iban {IBAN} here"]
    body = "".join(json.dumps({"custom_id": f"g{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": "haiku", "max_tokens": 64,
                                        "messages": [{"role": "user", "content": text}]}}) + "\n"
                   for i, text in enumerate(lines))
    f = c.files.create(file=("g.jsonl", io.BytesIO(body.encode())), purpose="batch")
    b = wait_batch(c, c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                       completion_window="24h").id)
    assert b.status == "completed" and b.request_counts.completed == 2 and b.request_counts.failed == 1, b
    [blocked] = [json.loads(x) for x in c.files.content(b.error_file_id).text.splitlines()]
    assert blocked["custom_id"] == "g1" and blocked["error"]["code"] == "guard_blocked", blocked
    assert "CARD" in blocked["error"]["message"] and CARD not in blocked["error"]["message"], blocked
    out = {json.loads(x)["custom_id"]: json.loads(x) for x in c.files.content(b.output_file_id).text.splitlines()}
    # The model saw a placeholder and a mask; the client gets its own email back.
    prompts = [r.get("prompt") or "" for r in batch_records(fleet)]
    assert any("<EMAIL_1>" in p for p in prompts) and not any(EMAIL in p or CARD in p or IBAN in p for p in prompts)
    assert EMAIL in out["g0"]["response"]["body"]["choices"][0]["message"]["content"], out["g0"]
    assert "<EMAIL_1>" not in json.dumps(out["g0"])


def test_a_tenant_runs_at_most_its_limit_of_batches_at_once(gw):
    c = oa(gw, US_KEY)
    f = c.files.create(file=("one.jsonl", io.BytesIO(chat_lines(2, "limit"))), purpose="batch")
    first = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.RateLimitError, match="max_active_per_tenant = 1"):
        c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert wait_batch(c, first.id).status == "completed"
    second = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert wait_batch(c, second.id).status == "completed"


def test_the_fleet_refuses_what_bedrock_refuses(fleet, moto):
    s3 = moto.s3()
    few = "\n".join(json.dumps({"recordId": f"F{i:010d}", "modelInput": {
        "messages": [{"role": "user", "content": [{"text": "few"}]}]}}) for i in range(5)) + "\n"
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", **CREDS).put_object(
        Bucket="batch-use1", Key="few/in.jsonl", Body=few.encode())
    s3.put_object(Bucket="batch-euw1", Key="eu/in.jsonl", Body=few.encode())
    c = sim_client(fleet, "us-east-1", "bedrock")
    arn = c.create_model_invocation_job(
        jobName="too-few", roleArn=ROLE, modelId="anthropic.claude-3-haiku-20240307-v1:0",
        modelInvocationType="Converse",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://batch-use1/few/in.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://batch-use1/few/out/"}})["jobArn"]
    wait_for(lambda: c.get_model_invocation_job(jobIdentifier=arn)["status"] == "Failed", 30, "the job to fail")
    assert "at least 100" in c.get_model_invocation_job(jobIdentifier=arn)["message"]
    with pytest.raises(c.exceptions.ValidationException, match="own region"):
        c.create_model_invocation_job(
            jobName="elsewhere", roleArn=ROLE, modelId="anthropic.claude-3-haiku-20240307-v1:0",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://batch-euw1/eu/in.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://batch-use1/few/out/"}})
    put_faults(fleet, "us-east-1", {"surfaces_down": ["batch"]})
    try:
        with pytest.raises(c.exceptions.ServiceQuotaExceededException):
            c.create_model_invocation_job(
                jobName="refused", roleArn=ROLE, modelId="anthropic.claude-3-haiku-20240307-v1:0",
                inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://batch-use1/few/in.jsonl"}},
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://batch-use1/few/out/"}})
    finally:
        put_faults(fleet, "us-east-1", {})


def test_anthropic_message_batch_runs_to_the_end_and_its_results_are_read(gw, fleet):
    c = anthropic.Anthropic(base_url=gw["url"], api_key=US_KEY, max_retries=0)
    reqs = [{"custom_id": f"m{i}", "params": {"model": "haiku", "max_tokens": 16,
                                               "messages": [{"role": "user", "content": f"message batch {i}"}]}}
            for i in range(3)]
    b = c.messages.batches.create(requests=reqs)
    assert b.processing_status == "in_progress" and b.request_counts.processing == 3, b
    deadline = time.time() + 60
    while b.processing_status != "ended" and time.time() < deadline:
        time.sleep(0.5)
        b = c.messages.batches.retrieve(b.id)
    assert b.processing_status == "ended" and b.request_counts.succeeded == 3, b
    results = list(c.messages.batches.results(b.id))
    assert sorted(r.custom_id for r in results) == ["m0", "m1", "m2"]
    for r in results:
        assert r.result.type == "succeeded", r
        assert r.result.message.content[0].text and r.result.message.usage.output_tokens > 0
    # Three records padded to Bedrock's minimum of 100: the job ran 100, the results show 3.
    job = next(j for j in jobs(fleet) if j["jobName"] == f"meridian-{b.id}".replace("_", ""))
    assert job["totalRecordCount"] == 100 and job["modelInvocationType"] == "InvokeModel", job


def test_boto3_create_model_invocation_job_runs_through_meridian(gw, fleet, moto):
    s3 = moto.s3()
    body = "\n".join(json.dumps({"recordId": f"R{i:010d}", "modelInput": {
        "messages": [{"role": "user", "content": [{"text": f"boto3 job {i}"}]}],
        "inferenceConfig": {"maxTokens": 8}}}) for i in range(100)) + "\n"
    s3.put_object(Bucket="batch-use1", Key="own/in.jsonl", Body=body.encode())
    c = boto3.client("bedrock", endpoint_url=gw["url"], region_name="us-east-1",
                     aws_access_key_id=US_CREDS[0], aws_secret_access_key=US_CREDS[1], config=NO_RETRY)
    arn = c.create_model_invocation_job(
        jobName="own-job", roleArn=ROLE, modelId="haiku", modelInvocationType="Converse",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://batch-use1/own/in.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://batch-use1/own/out/"}})["jobArn"]
    assert ":us-east-1:" in arn
    wait_for(lambda: c.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed", 60, "the job to complete")
    j = c.get_model_invocation_job(jobIdentifier=arn)
    assert j["modelId"] == "anthropic.claude-3-haiku-20240307-v1:0" and j["successRecordCount"] == 100, j
    assert arn in [s["jobArn"] for s in c.list_model_invocation_jobs()["invocationJobSummaries"]]
    # A bucket Meridian does not know is refused before anything reaches Bedrock.
    with pytest.raises(c.exceptions.ValidationException, match="not in one"):
        c.create_model_invocation_job(
            jobName="elsewhere", roleArn=ROLE, modelId="haiku",
            inputDataConfig={"s3InputDataConfig": {"s3Uri": "s3://somebody-else/in.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://batch-use1/own/out/"}})


def test_an_eu_tenant_batch_stays_in_the_eu_and_fails_naming_why_when_every_eu_region_refuses(gw, fleet, moto):
    c = oa(gw, EU_KEY)
    before = objects(moto)["batch-use1"]
    f = c.files.create(file=("eu.jsonl", io.BytesIO(chat_lines(5, "eu"))), purpose="batch")
    b = wait_batch(c, c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                       completion_window="24h").id)
    assert b.status == "completed" and b.request_counts.completed == 5, b
    job = next(j for j in jobs(fleet) if j["jobName"] == f"meridian-{b.id}".replace("_", ""))
    assert job["region"] in ("eu-west-1", "eu-central-1"), job
    for r in ("eu-west-1", "eu-central-1"):
        put_faults(fleet, r, {"surfaces_down": ["batch"]})
    try:
        f2 = c.files.create(file=("eu2.jsonl", io.BytesIO(chat_lines(5, "eu-refused"))), purpose="batch")
        b2 = c.batches.create(input_file_id=f2.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert b2.status == "failed", b2
        message = b2.errors.data[0].message
        assert "eu-west-1" in message and "eu-central-1" in message and "quota" in message, message
    finally:
        for r in ("eu-west-1", "eu-central-1"):
            put_faults(fleet, r, {})
    after = objects(moto)
    assert after["batch-use1"] == before, "an EU tenant's batch wrote to a US bucket"
    assert not any(b2.id in k for k in after["batch-use1"])


def test_a_budget_refuses_a_batch_before_upload_and_a_finished_batch_costs_its_records(gw, fleet, moto):
    c = oa(gw, CENTS_KEY)
    big = c.files.create(file=("big.jsonl", io.BytesIO(chat_lines(150, "cents"))), purpose="batch")
    before = objects(moto)
    with pytest.raises(openai.APIStatusError) as e:
        c.batches.create(input_file_id=big.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.status_code in (400, 429) and "budget" in str(e.value), e.value
    assert objects(moto) == before, "a refused batch was uploaded"
    small = c.files.create(file=("small.jsonl", io.BytesIO(chat_lines(2, "cents-small"))), purpose="batch")
    b = wait_batch(c, c.batches.create(input_file_id=small.id, endpoint="/v1/chat/completions",
                                       completion_window="24h").id)
    assert b.status == "completed", (b.errors, b.request_counts)
    # The records' tokens at the batch price (half of claude-3-haiku's $0.25/$1.25 per million),
    # padded records included.
    out_key = next(k for k in objects(moto)["batch-use1"] if b.id in k and k.endswith("input.jsonl.out"))
    recs = [json.loads(x) for x in moto.s3().get_object(Bucket="batch-use1", Key=out_key)["Body"].read().splitlines()]
    tin = sum(r["modelOutput"]["usage"]["inputTokens"] for r in recs)
    tout = sum(r["modelOutput"]["usage"]["outputTokens"] for r in recs)
    expected = (tin * 0.125 + tout * 0.625) / 1e6
    wait_for(lambda: abs(usage(gw, "cents")["day"]["cost_usd"] - expected) < 1e-9, 10, "the batch to be settled")
    print(f"batch settled at ${expected:.8f} ({tin} input, {tout} output tokens in {len(recs)} records)")


def test_a_replica_killed_mid_batch_is_finished_by_another(fleet, moto, tmp_path_factory):
    redis = Redis(tmp_path_factory.mktemp("batchredis"))
    a = gateway(fleet, moto, tmp_path_factory.mktemp("replica-a"), redis.url)
    b = gateway(fleet, moto, tmp_path_factory.mktemp("replica-b"), redis.url)
    try:
        ca = oa(a, US_KEY)
        f = ca.files.create(file=("kill.jsonl", io.BytesIO(chat_lines(120, "kill"))), purpose="batch")
        batch = ca.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        a["proc"].p.kill()
        a["proc"].p.wait(timeout=5)
        cb = oa(b, US_KEY)
        done = wait_batch(cb, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 120, done
        out = cb.files.content(done.output_file_id).text.splitlines()
        assert len(out) == 120
    finally:
        a["proc"].stop()
        b["proc"].stop()
        redis.kill()
