"""Tenants across three `meridian serve` replicas sharing one redis-server:
rate and token limits held across replicas while another tenant is
unaffected, a budget that runs out on every replica with /admin usage equal
to the invocation records' costs, key revocation seen by every replica within
a second, and Redis killed and restarted mid-run (last: it ends the module)."""
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore
import openai
import pytest

from conftest import NO_RETRY, key_hash, start_fleet_gateway

ADMIN_KEY = "mk-e2e-admin-key-000000000000000001"
BETA_KEY = "mk-e2e-beta-key-0000000000000000001"
GAMMA_KEY = "mk-e2e-gamma-key-000000000000000001"
CENTS_KEY = "mk-e2e-cents-key-000000000000000001"
ALPHA = ("AKIDALPHATENANT", "alpha-tenant-secret")
CENTS = ("AKIDCENTSTENANT", "cents-tenant-secret")
RPM, TPM = 240, 3000
MSG = [{"role": "user", "content": [{"text": "hi"}]}]


def tenants_toml(redis_url, on_unavailable="fail_open"):
    return f"""
[models.chat]
model = "claude-sonnet-4-5"

[tenants.alpha]
credentials = [{{ access_key_id = "{ALPHA[0]}", secret_access_key = "{ALPHA[1]}" }}]
requests_per_minute = {RPM}

[tenants.beta]
api_keys = ["{key_hash(BETA_KEY)}"]
tokens_per_minute = {TPM}

[tenants.gamma]
api_keys = ["{key_hash(GAMMA_KEY)}"]

[tenants.cents]
api_keys = ["{key_hash(CENTS_KEY)}"]
credentials = [{{ access_key_id = "{CENTS[0]}", secret_access_key = "{CENTS[1]}" }}]
budget_usd_per_day = 0.01

[state]
backend = "redis"
url = "{redis_url}"
replicas = 3
on_unavailable = "{on_unavailable}"

[admin]
key_hash = "{key_hash(ADMIN_KEY)}"

[logging]
sink = "file"
file = "invocations.ndjson"
"""


@pytest.fixture(scope="module")
def replicas(sim, redis, tmp_path_factory):
    gws = [start_fleet_gateway(sim, tmp_path_factory.mktemp(f"replica{i}"), tenants_toml(redis.url))
           for i in range(3)]
    yield gws
    for g in gws:
        g["proc"].stop()


def bedrock(gw, creds):
    return boto3.client("bedrock-runtime", endpoint_url=gw["url"], region_name="us-east-1",
                        aws_access_key_id=creds[0], aws_secret_access_key=creds[1], config=NO_RETRY)


def chat(gw, key):
    return openai.OpenAI(base_url=gw["url"] + "/v1", api_key=key, max_retries=0, timeout=30)


def admin(gw, method, path, body=None):
    req = urllib.request.Request(gw["url"] + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def status(gw):
    req = urllib.request.Request(gw["url"] + "/status", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def open_loop(rate, seconds, call):
    """Calls `call(i)` `rate` times a second for `seconds`, on the clock, not
    on completions; returns (results, seconds from first to last send)."""
    results, futures = [], []
    with ThreadPoolExecutor(32) as pool:
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(call, i))
        last = time.monotonic()
        results = [f.result() for f in futures]
    return results, last - start


def test_limits_hold_across_replicas_and_other_tenants_are_unaffected(replicas):
    def alpha(i):
        try:
            bedrock(replicas[i % 3], ALPHA).converse(modelId="chat", messages=MSG,
                                                      inferenceConfig={"maxTokens": 4})
            return "ok"
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"]

    def beta(i):
        try:
            r = chat(replicas[(i + 1) % 3], BETA_KEY).chat.completions.create(
                model="chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            return r.usage.total_tokens
        except openai.RateLimitError as e:
            return e.code

    def gamma(i):
        r = chat(replicas[(i + 2) % 3], GAMMA_KEY).chat.completions.with_raw_response.create(
            model="chat", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        return r.http_response.status_code

    out = {}
    threads = [threading.Thread(target=lambda name=name, rate=rate, f=f: out.__setitem__(name, open_loop(rate, 30, f)))
               for name, rate, f in [("alpha", 2 * RPM / 60, alpha), ("beta", 8, beta), ("gamma", 4, gamma)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # Requests: 4 a second, plus one second's burst (5 at once), over the sending time.
    results, elapsed = out["alpha"]
    admitted = results.count("ok")
    assert set(results) <= {"ok", "ThrottlingException"}, set(results)
    expected = elapsed * RPM / 60 + 5
    print(f"requests: admitted {admitted} of {len(results)} sent in {elapsed:.1f} s; limit {expected:.1f}")
    assert abs(admitted - expected) <= 0.05 * expected, (admitted, expected, len(results))

    # Tokens: 50 a second settled to real usage, plus a second's burst and one request.
    results, elapsed = out["beta"]
    used = sum(r for r in results if isinstance(r, int))
    refused = [r for r in results if not isinstance(r, int)]
    assert refused and set(refused) == {"rate_limit_exceeded"}, set(refused)
    expected = elapsed * TPM / 60 + TPM / 60 + 15
    print(f"tokens: used {used} by {len(results) - len(refused)} of {len(results)} requests in {elapsed:.1f} s; "
          f"limit {expected:.1f}")
    assert abs(used - expected) <= 0.05 * expected, (used, expected, len(results) - len(refused))

    # The unlimited tenant, at the same time, on the same replicas: every request answered.
    results, _ = out["gamma"]
    assert results == [200] * len(results), set(results)


def test_a_budget_runs_out_on_every_replica_and_usage_matches_the_records(replicas):
    spent_at = None
    for i in range(400):
        try:
            bedrock(replicas[i % 3], CENTS).converse(modelId="chat", messages=MSG, inferenceConfig={"maxTokens": 40})
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "ServiceQuotaExceededException", e.response
            spent_at = i
            break
    assert spent_at is not None and spent_at > 5, "a budget of one cent outlasted 400 requests"
    for gw in replicas:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bedrock(gw, CENTS).converse(modelId="chat", messages=MSG)
        err = e.value.response["Error"]
        assert err["Code"] == "ServiceQuotaExceededException"
        assert "daily budget of tenant 'cents'" in err["Message"] and "resets at" in err["Message"], err
        with pytest.raises(openai.RateLimitError) as e:
            chat(gw, CENTS_KEY).chat.completions.create(model="chat", max_tokens=4,
                                                         messages=[{"role": "user", "content": "hi"}])
        assert e.value.code == "insufficient_quota"

    def record_costs():
        total = 0.0
        for gw in replicas:
            for line in (gw["dir"] / "invocations.ndjson").read_text().splitlines():
                r = json.loads(line)
                if r["meridian"].get("tenant") == "cents":
                    total += r["meridian"].get("estimatedCostUsd", 0.0)
        return total

    deadline = time.time() + 10
    while True:
        _, usage = admin(replicas[1], "GET", "/admin/usage")
        cents = next(t for t in usage["tenants"] if t["name"] == "cents")
        records = record_costs()
        if abs(cents["day"]["cost_usd"] - records) < 1e-9 or time.time() > deadline:
            break
        time.sleep(0.2)
    print(f"budget: spent after {spent_at} requests; /admin usage {cents['day']['cost_usd']:.6f} USD, "
          f"records {records:.6f} USD")
    assert cents["day"]["cost_usd"] >= 0.01
    assert abs(cents["day"]["cost_usd"] - records) < 1e-9, (cents, records)


def test_a_key_revoked_on_one_replica_is_refused_by_the_others_within_a_second(replicas):
    code, issued = admin(replicas[0], "POST", "/admin/keys", {"tenant": "gamma"})
    assert code == 201, issued
    key = issued["key"]
    for gw in replicas:
        assert chat(gw, key).chat.completions.create(
            model="chat", max_tokens=4, messages=[{"role": "user", "content": "hi"}]).choices
    _, listed = admin(replicas[2], "GET", "/admin/keys")
    assert issued["id"] in json.dumps(listed) and key not in json.dumps(listed)
    code, _ = admin(replicas[1], "DELETE", f"/admin/keys/{issued['id']}")
    assert code == 204
    revoked = time.monotonic()
    for gw in (replicas[0], replicas[2]):
        while True:
            try:
                chat(gw, key).models.list()
            except openai.AuthenticationError:
                break
            assert time.monotonic() - revoked < 1.0, "a revoked key still worked after 1 s"
            time.sleep(0.05)


def test_redis_killed_mid_run_fail_open_and_closed_then_recovery(sim, redis, replicas, tmp_path_factory):
    closed = start_fleet_gateway(sim, tmp_path_factory.mktemp("closed"), tenants_toml(redis.url, "fail_closed"))
    try:
        assert chat(closed, GAMMA_KEY).chat.completions.create(
            model="chat", max_tokens=4, messages=[{"role": "user", "content": "hi"}]).choices

        def alpha(gw):
            try:
                bedrock(gw, ALPHA).converse(modelId="chat", messages=MSG, inferenceConfig={"maxTokens": 4})
                return "ok"
            except botocore.exceptions.ClientError as e:
                return e.response["Error"]["Code"]

        redis.kill()
        # Open replicas keep answering under local limits (240 ÷ 3 a minute each).
        answers = [alpha(gw) for _ in range(3) for gw in replicas]
        assert "ok" in answers and set(answers) <= {"ok", "ThrottlingException"}, answers
        # The closed one refuses limited tenants, quickly and in Bedrock's shape.
        t0 = time.monotonic()
        assert alpha(closed) == "ServiceUnavailableException"
        assert time.monotonic() - t0 < 2
        for gw in replicas + [closed]:
            assert gw["proc"].p.poll() is None, "a replica crashed"
            assert status(gw)["state_backend"]["reachable"] is False

        redis.start()
        back = time.monotonic()
        while not all(status(gw)["state_backend"]["reachable"] for gw in replicas + [closed]):
            assert time.monotonic() - back < 5, "shared limits did not resume within 5 s"
            time.sleep(0.1)
        while alpha(closed) != "ok":
            assert time.monotonic() - back < 5, "the fail_closed replica still refuses"
            time.sleep(0.2)
    finally:
        closed["proc"].stop()
