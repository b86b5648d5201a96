"""Fail closed (issue 25), the limits side: Redis trouble is a retryable error
and never leaves phantom in-flight requests; a tenant's bodies are bounded
before they are read; every embedding input is reserved; token arithmetic
saturates; /status, /v1/models and model permissions per caller."""
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import Redis, key_hash, start_fleet_gateway, wait_for

KEY = "mk-e2e-fail-closed-limits-key-000001"
OTHER = "mk-e2e-fail-closed-limits-key-000002"
ADMIN = "mk-e2e-fail-closed-limits-admin-0001"


def get(gw, path, key=None):
    """(status, JSON body) of a GET."""
    req = urllib.request.Request(gw["url"] + path, headers={"authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def converse(gw, key, model="chat", max_tokens=4):
    req = urllib.request.Request(gw["url"] + f"/model/{model}/converse", method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
                                 data=json.dumps({"messages": [{"role": "user", "content": [{"text": "r"}]}],
                                                  "inferenceConfig": {"maxTokens": max_tokens}}).encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("x-amzn-errortype", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-amzn-errortype", "")


def redis_cli(redis, *args):
    return subprocess.run(["redis-cli", "-p", str(redis.port), *args], capture_output=True, text=True,
                          timeout=10).stdout.strip()


@pytest.fixture
def own_redis(tmp_path):
    r = Redis(tmp_path)
    yield r
    if r.p.poll() is None:
        r.p.send_signal(signal.SIGCONT)
    r.kill()


def test_status_models_and_permissions_are_per_caller(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("per-caller")
    gw = start_fleet_gateway(sim, d, f"""
[models.chat]
model = "claude-sonnet-4-5"

[models.other]
model = "claude-haiku-4-5"

[tenants.alpha]
api_keys = ["{key_hash(KEY)}"]
models = ["chat"]

[tenants.beta]
api_keys = ["{key_hash(OTHER)}"]
models = ["other"]

[admin]
key_hash = "{key_hash(ADMIN)}"
""")
    try:
        code, body = get(gw, "/status")
        assert code == 401 and "tenants" not in body, body
        code, body = get(gw, "/status", ADMIN)
        assert code == 200 and {t["name"] for t in body["tenants"]} == {"alpha", "beta"}
        assert body["inbound_auth"].startswith("enforced: 2 tenant(s)"), body["inbound_auth"]
        code, body = get(gw, "/status", KEY)
        assert code == 200 and [t["name"] for t in body["tenants"]] == ["alpha"], body["tenants"]
        assert [m["name"] for m in body["models"]] == ["chat"]
        # /v1/models: what the caller may call.
        oai = openai.OpenAI(base_url=gw["url"] + "/v1", api_key=KEY, max_retries=0)
        assert [m.id for m in oai.models.list()] == ["chat"]
        # Another tenant's model is a permission, not a wrong key.
        with pytest.raises(openai.PermissionDeniedError) as e:
            oai.chat.completions.create(model="other", max_tokens=4, messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == 403
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=gw["url"] + "/v1", api_key="mk-wrong", max_retries=0).models.list()
    finally:
        gw["proc"].stop()


def test_issued_keys_are_a_retryable_503_while_redis_is_down_and_hung_leases_are_released(
        sim, own_redis, tmp_path_factory):
    d = tmp_path_factory.mktemp("redis-down")
    gw = start_fleet_gateway(sim, d, f"""
[models.chat]
model = "claude-sonnet-4-5"

[tenants.team]
api_keys = ["{key_hash(KEY)}"]
max_concurrent = 4

[state]
backend = "redis"
url = "{own_redis.url}"
on_unavailable = "fail_open"
timeout_ms = 200

[admin]
key_hash = "{key_hash(ADMIN)}"
""")
    try:
        req = urllib.request.Request(gw["url"] + "/admin/keys", method="POST", data=b'{"tenant": "team"}',
                                     headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            issued = json.loads(r.read())["key"]
        # Redis does not answer (stopped, it keeps its data), and this
        # replica never looked the key up: 503, not "invalid".
        own_redis.p.send_signal(signal.SIGSTOP)
        code, kind = converse(gw, issued)
        assert code == 503 and kind.startswith("ServiceUnavailableException"), (code, kind)
        own_redis.p.send_signal(signal.SIGCONT)
        wait_for(lambda: converse(gw, issued)[0] == 200, 15, "the issued key works again")
        # Under fail_open, the key's last known answer stands while Redis is down.
        own_redis.p.send_signal(signal.SIGSTOP)
        time.sleep(0.6)  # past the lookup cache: Redis must be asked, and cannot answer
        assert converse(gw, issued)[0] == 200
        own_redis.p.send_signal(signal.SIGCONT)
        wait_for(lambda: get(gw, "/status", ADMIN)[1]["state_backend"]["reachable"], 15, "Redis back")
        wait_for(lambda: redis_cli(own_redis, "ZCARD", "meridian:{t:team}:if") == "0", 10, "settled")

        # A hung Redis (SIGSTOP): requests admitted meanwhile queue their
        # admissions, which run when it resumes; none stays in flight.
        own_redis.p.send_signal(signal.SIGSTOP)
        answers = [converse(gw, KEY)[0] for _ in range(3)]
        assert answers == [200, 200, 200], answers
        time.sleep(1)
        own_redis.p.send_signal(signal.SIGCONT)
        wait_for(lambda: get(gw, "/status", ADMIN)[1]["state_backend"]["reachable"], 15, "Redis answers again")
        wait_for(lambda: redis_cli(own_redis, "ZCARD", "meridian:{t:team}:if") == "0", 10,
                 "no phantom in-flight leases")
        assert [converse(gw, KEY)[0] for _ in range(4)] == [200] * 4
    finally:
        gw["proc"].stop()


def test_a_tenants_bodies_are_bounded_before_they_are_read(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("bodies")
    gw = start_fleet_gateway(sim, d, f"""
[models.chat]
model = "claude-sonnet-4-5"

[tenants.team]
api_keys = ["{key_hash(KEY)}"]
max_concurrent = 2
""")

    def head(length):
        s = socket.create_connection(("127.0.0.1", gw["port"]), timeout=10)
        s.sendall((f"POST /model/chat/converse HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                   f"authorization: Bearer {KEY}\r\ncontent-length: {length}\r\n\r\n").encode())
        return s

    def status_line(s, within):
        s.settimeout(within)
        try:
            return s.recv(4096).split(b"\r\n")[0].decode()
        except socket.timeout:
            return None

    socks = []
    try:
        # Over the limit by its header: refused at once, nothing read.
        s = head(100_000_000)
        socks.append(s)
        assert status_line(s, 5) == "HTTP/1.1 400 Bad Request"
        # Two slow bodies hold the tenant's two slots; a third is refused
        # before its body is read.
        slow = [head(5_000_000), head(5_000_000)]
        socks += slow
        assert all(status_line(s, 1) is None for s in slow), "the first two wait for their bodies"
        third = head(5_000_000)
        socks.append(third)
        line = status_line(third, 5)
        assert line == "HTTP/1.1 429 Too Many Requests", line
    finally:
        for s in socks:
            s.close()
        gw["proc"].stop()


def test_every_embedding_input_is_reserved_and_token_arithmetic_saturates(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("reserve")
    gw = start_fleet_gateway(sim, d, f"""
[models.chat]
model = "claude-sonnet-4-5"

[models.embed]
model = "titan-embed-text-v2"

[tenants.team]
api_keys = ["{key_hash(KEY)}"]
tokens_per_minute = 6000
""")
    try:
        oai = openai.OpenAI(base_url=gw["url"] + "/v1", api_key=KEY, max_retries=0)
        # 300 inputs of about 140 tokens each, about 42,000 in all: the
        # reservation covers every one (the tokens window resets minutes
        # from now, not seconds), and the tenant waits for it.
        raw = oai.embeddings.with_raw_response.create(model="embed",
                                                      input=["lorem ipsum dolor sit amet " * 20] * 300)
        assert len(raw.parse().data) == 300
        reset = raw.headers["x-ratelimit-reset-tokens"]
        assert "m" in reset and int(reset.split("m")[0]) >= 5, reset
        with pytest.raises(openai.RateLimitError):
            oai.embeddings.create(model="embed", input="one input")
        # maxTokens of 2^64 − 1: reserved as everything, never wrapped (a
        # debug build would panic); the tenant's limit refuses it.
        code, kind = converse(gw, KEY, max_tokens=2**64 - 1)
        assert code in (400, 429), (code, kind)
        assert gw["proc"].p.poll() is None and "panicked" not in gw["proc"].output()
    finally:
        gw["proc"].stop()
