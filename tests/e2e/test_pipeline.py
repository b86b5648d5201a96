"""The one pipeline, seen from real clients: the residency header on /v1
(the OpenAI SDK) is honoured as on the Bedrock path, and a log consumer that
stops reading stdout does not stall requests."""
import json
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from conftest import Proc, clean_env, fleet_gateway, free_port, sim_records, wait_http


@pytest.fixture(scope="module")
def unrestricted(sim, tmp_path_factory):
    """A gateway in us-east-1 with no residency policy at all."""
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("open"), """
[models.chat]
model = "claude-sonnet-4-5"
""")


def processed_in(records):
    return {r.get("inference_region") or r["endpoint_region"] for r in records}


def test_openai_sdk_residency_header_keeps_processing_in_the_eu(sim, unrestricted):
    plain = openai.OpenAI(base_url=unrestricted["url"] + "/v1", api_key="unused", max_retries=0, timeout=30)
    eu = openai.OpenAI(base_url=unrestricted["url"] + "/v1", api_key="unused", max_retries=0, timeout=30,
                       default_headers={"x-meridian-residency": "eu"})
    msgs = [{"role": "user", "content": "where am I processed?"}]

    # Without the header, the nearest region serves (us-east-1): the check below can tell.
    seen = len(sim_records(sim))
    r = plain.chat.completions.with_raw_response.create(model="chat", max_tokens=8, messages=msgs)
    assert r.headers["x-meridian-region"].startswith("us-")
    assert any(not x.startswith("eu-") for x in processed_in(sim_records(sim)[seen:]))

    seen = len(sim_records(sim))
    for _ in range(5):
        r = eu.chat.completions.with_raw_response.create(model="chat", max_tokens=8, messages=msgs)
        assert r.headers["x-meridian-region"].startswith("eu-"), r.headers["x-meridian-region"]
        assert "You said" in r.parse().choices[0].message.content
    stream = eu.chat.completions.create(model="chat", max_tokens=8, stream=True, messages=msgs)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    records = sim_records(sim)[seen:]
    assert len(records) >= 6
    where = processed_in(records)
    assert where and all(x.startswith("eu-") for x in where), where


def test_a_stdout_nobody_reads_does_not_stall_requests(tmp_path):
    (tmp_path / "meridian.toml").write_text("""
region = "us-east-1"
[upstream]
mode = "simulated"
[logging]
sink = "stdout"
[server]
log_queue_records = 64
""")
    port = free_port()
    # stdout is a pipe that is never read: it fills after ~64 KiB.
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(tmp_path), tmp_path,
                tmp_path / "serve.log", stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health", proc, timeout=30)
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": "x" * 400}]}],
                           "inferenceConfig": {"maxTokens": 4}}).encode()

        def call(_):
            req = urllib.request.Request(base + "/model/claude-haiku-4-5/converse", data=body, method="POST",
                                         headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status
            except Exception as e:  # noqa: BLE001 - counted as not answered
                return repr(e)

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(call, range(500)))
        assert statuses.count(200) == 500, [s for s in statuses if s != 200][:5]

        status = wait_http(base + "/status", proc)
        log = status["invocation_log"]
        assert log["sinks"] == ["stdout"]
        # The pipe holds a few dozen records and the queue 64: the rest were dropped and counted.
        assert log["dropped_queue_full"] > 0, log
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        dropped = [line for line in metrics.splitlines()
                   if line.startswith('meridian_log_records_dropped_total{reason="queue_full"}')]
        assert dropped and float(dropped[0].split()[-1]) == log["dropped_queue_full"], dropped
        assert "not keeping up" in proc.output(), "a warning names the problem"
    finally:
        proc.stop()
