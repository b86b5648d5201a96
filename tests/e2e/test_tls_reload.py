"""Inbound TLS for boto3's Bedrock API keys and the OpenAI SDK, and config hot
reload under load: new limits and models apply, nothing fails because of the
reload, an invalid file is refused and reported while the old config stays."""
import datetime
import ipaddress
import json
import os
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request

import boto3
import httpx
import openai
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import key_hash, start_fleet_gateway

KEY = "mk-e2e-tls-tenant-key-00000000000001"


def self_signed(d):
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meridian-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.pem"


@pytest.fixture(scope="module")
def tls_gateway(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert = self_signed(d)
    gw = start_fleet_gateway(sim, d, f"""
[models.chat]
model = "claude-sonnet-4-5"

[tenants.team]
api_keys = ["{key_hash(KEY)}"]

[server]
tls_cert = "cert.pem"
tls_key = "key.pem"
""", scheme="https")
    gw["cert"] = str(cert)
    yield gw
    gw["proc"].stop()


def test_boto3_bedrock_api_key_over_https(tls_gateway, monkeypatch):
    # botocore sends AWS_BEARER_TOKEN_BEDROCK only over HTTPS.
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    rt = boto3.client("bedrock-runtime", endpoint_url=tls_gateway["url"], region_name="us-east-1",
                      verify=tls_gateway["cert"], config=Config(retries={"max_attempts": 1}))
    r = rt.converse(modelId="chat", messages=[{"role": "user", "content": [{"text": "over tls"}]}])
    assert "You said: over tls" in r["output"]["message"]["content"][0]["text"]
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "mk-not-a-key-of-this-meridian-00001")
    bad = boto3.client("bedrock-runtime", endpoint_url=tls_gateway["url"], region_name="us-east-1",
                       verify=tls_gateway["cert"], config=Config(retries={"max_attempts": 1}))
    with pytest.raises(bad.exceptions.AccessDeniedException):
        bad.converse(modelId="chat", messages=[{"role": "user", "content": [{"text": "x"}]}])


def test_openai_sdk_over_https(tls_gateway):
    with httpx.Client(verify=ssl.create_default_context(cafile=tls_gateway["cert"])) as http:
        client = openai.OpenAI(base_url=tls_gateway["url"] + "/v1", api_key=KEY, http_client=http, max_retries=0)
        r = client.chat.completions.create(model="chat", max_tokens=8, messages=[{"role": "user", "content": "tls"}])
        assert r.choices[0].message.content
    # Without the certificate, the client refuses the server (it is really TLS).
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=tls_gateway["url"] + "/v1", api_key=KEY, max_retries=0).models.list()


RELOAD = """
[models.chat]
model = "claude-sonnet-4-5"

[models.small]
model = "claude-3-haiku"

[tenants.team]
api_keys = ["{key}"]
models = {models}
requests_per_minute = {rpm}
"""


def call(gw, model):
    req = urllib.request.Request(gw["url"] + f"/model/{model}/converse", method="POST",
                                 data=json.dumps({"messages": [{"role": "user", "content": [{"text": "r"}]}],
                                                  "inferenceConfig": {"maxTokens": 4}}).encode(),
                                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:  # noqa: BLE001 - any transport failure fails the test
        return repr(e)


def reloads(gw):
    # With tenants, /status needs a key: a tenant's shows its own view.
    req = urllib.request.Request(gw["url"] + "/status", headers={"authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["config"]["reloads"]


def test_hot_reload_under_load(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("reload")
    body = RELOAD.format(key=key_hash(KEY), models='["chat"]', rpm=60)
    gw = start_fleet_gateway(sim, d, body)
    path = d / "meridian.toml"
    seen, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            seen.append(call(gw, "chat"))
            time.sleep(0.1)

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(2)
        assert call(gw, "small") == 403, "not in the tenant's models yet"
        assert 429 in seen, "60 a minute at 10 a second throttles"
        text = path.read_text().replace('models = ["chat"]', 'models = ["chat", "small"]')
        text = text.replace("requests_per_minute = 60", "requests_per_minute = 60000")
        path.write_text(text)
        os.kill(gw["proc"].p.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while reloads(gw)["applied"] < 1:
            assert time.time() < deadline, reloads(gw)
            time.sleep(0.1)
        # A request admitted just before the swap may still answer 429.
        mark = len(seen) + 1
        time.sleep(2)
        after = seen[mark:]
        assert after and all(s == 200 for s in after), after
        assert call(gw, "small") == 200, "the new model list applies"

        # An invalid file is refused, reported with its line; the running config stays.
        path.write_text(text.replace("requests_per_minute = 60000", 'requests_per_minute = "lots"'))
        os.kill(gw["proc"].p.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while reloads(gw)["refused"] < 1:
            assert time.time() < deadline, reloads(gw)
            time.sleep(0.1)
        err = reloads(gw)["last_error"]
        assert "meridian.toml:" in err and "requests_per_minute" in err, err
        assert call(gw, "small") == 200
    finally:
        stop.set()
        t.join(timeout=30)
        gw["proc"].stop()
    assert set(seen) <= {200, 429}, set(seen)
    assert gw["proc"].p.returncode in (0, -15), gw["proc"].output()
