"""Fail closed (issue 25): a reload that would lower the security posture is
refused and the running config keeps authenticating; the findings of the
adversarial pass, each reproduced against `meridian serve`."""
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import key_hash, metric, start_fleet_gateway, wait_for

KEY = "mk-e2e-fail-closed-tenant-key-000001"
ADMIN = "mk-e2e-fail-closed-admin-key-0000001"

TENANTS = f"""
[tenants.team]
api_keys = ["{key_hash(KEY)}"]
"""
ADMIN_SECTION = f"""
[admin]
key_hash = "{key_hash(ADMIN)}"
"""
MODELS = """
[models.chat]
model = "claude-sonnet-4-5"
"""


def converse(gw, key=None):
    """The HTTP status of one Converse call (with `key` as bearer, if any)."""
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(gw["url"] + "/model/chat/converse", method="POST", headers=headers,
                                 data=json.dumps({"messages": [{"role": "user", "content": [{"text": "r"}]}],
                                                  "inferenceConfig": {"maxTokens": 4}}).encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def reloads(gw):
    req = urllib.request.Request(gw["url"] + "/status", headers={"authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["config"]["reloads"]


def test_a_reload_never_switches_authentication_off(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("reload-posture")
    gw = start_fleet_gateway(sim, d, MODELS + TENANTS + ADMIN_SECTION)
    path = d / "meridian.toml"
    full = path.read_text()
    try:
        assert converse(gw) in (401, 403)
        assert converse(gw, KEY) == 200
        before = reloads(gw)

        def refused_more_than(n):
            return lambda: reloads(gw)["refused"] > n

        # 1. An empty file (`: > meridian.toml`).
        path.write_text("")
        wait_for(refused_more_than(before["refused"]), 15, "the empty file refused")
        r = reloads(gw)
        assert "empty" in r["last_error"], r
        assert converse(gw) in (401, 403), "authentication stays on"
        assert converse(gw, KEY) == 200
        seen = r["refused"]

        # 2. A non-atomic rewrite: the first half (no tenants, no [admin]),
        # then the rest two seconds later. Unauthenticated calls during the
        # gap are refused; the whole file then applies.
        cut = full.index("[tenants.team]")
        path.write_text(full[:cut])
        unauthenticated = []
        deadline = time.time() + 2.2
        while time.time() < deadline:
            unauthenticated.append(converse(gw))
            time.sleep(0.1)
        wait_for(refused_more_than(seen), 15, "the half-written file refused")
        r = reloads(gw)
        assert any("tenants" in w for w in r["weaker"]), r
        assert any("[admin]" in w for w in r["weaker"]), r
        applied = r["applied"]
        path.write_text(full + "\n# rewritten\n")
        wait_for(lambda: reloads(gw)["applied"] > applied, 15, "the whole file applied")
        assert set(unauthenticated) <= {401, 403}, unauthenticated
        assert reloads(gw)["weaker"] == []
        seen = reloads(gw)["refused"]

        # 3. Tenants removed from a valid file.
        path.write_text(full.replace(TENANTS, ""))
        wait_for(refused_more_than(seen), 15, "the file without tenants refused")
        r = reloads(gw)
        assert r["weaker"] and all("tenants" in w for w in r["weaker"]), r
        assert converse(gw) in (401, 403)
        seen = r["refused"]

        # 4. [admin] removed.
        path.write_text(full.replace(ADMIN_SECTION, ""))
        wait_for(refused_more_than(seen), 15, "the file without [admin] refused")
        r = reloads(gw)
        assert r["weaker"] and all("[admin]" in w for w in r["weaker"]), r
        assert r["last_error"].startswith("refused: the new config would lower"), r

        # A change that keeps the posture still applies.
        applied = r["applied"]
        path.write_text(full.replace("[models.chat]", "[models.other]\nmodel = \"claude-haiku-4-5\"\n\n[models.chat]"))
        wait_for(lambda: reloads(gw)["applied"] > applied, 15, "a safe change applied")
        assert converse(gw, KEY) == 200 and converse(gw) in (401, 403)
        log = gw["proc"].output()
        assert "would lower the security posture" in log, log[-2000:]
    finally:
        gw["proc"].stop()


def closed_by_peer(sock, within):
    """Whether the other side closes `sock` within `within` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_connections_that_send_nothing_are_closed_and_capped(sim, tmp_path_factory):
    """200 silent sockets from one address under `ulimit -n 256`: the peer gets
    its share (half of 256 − 64), the rest are closed at once, the share is
    closed at the first-byte deadline; /health from another address answers
    throughout. An idle h2c connection and an idle keep-alive connection are
    closed at the idle deadline."""
    d = tmp_path_factory.mktemp("connections")
    gw = start_fleet_gateway(sim, d, MODELS + "\n[server]\nfirst_byte_timeout_ms = 3000\nidle_timeout_ms = 3000\n",
                             nofile=256)
    socks = []
    try:
        started = time.time()
        for _ in range(200):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", gw["port"]))
            socks.append(s)
        health = []
        while time.time() < started + 2:
            with urllib.request.urlopen(gw["url"] + "/health", timeout=2) as r:
                health.append(r.status)
            time.sleep(0.1)
        assert health and set(health) == {200}, health
        assert metric(gw["url"], "meridian_connections_max") == 192
        refused = metric(gw["url"], "meridian_connections_refused_total", reason="per_peer")
        assert refused == 200 - 96, refused
        # Every one of them is closed by the gateway, the last at the deadline.
        assert all(closed_by_peer(s, max(0.1, started + 8 - time.time())) for s in socks)
        # Counted once the connection's task ends, just after the socket closes.
        wait_for(lambda: metric(gw["url"], "meridian_connections_closed_total", reason="first_byte") >= 96,
                 5, "96 connections counted as closed at the first-byte deadline")

        # HTTP/2 without TLS: the preface and SETTINGS, then nothing.
        h2 = socket.create_connection(("127.0.0.1", gw["port"]))
        h2.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        # HTTP/1.1 keep-alive: one request answered, then nothing.
        h1 = socket.create_connection(("127.0.0.1", gw["port"]))
        h1.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        h1.settimeout(5)
        assert b"200 OK" in h1.recv(4096)
        idle_before = metric(gw["url"], "meridian_connections_closed_total", reason="idle")
        assert closed_by_peer(h2, 8), "an idle h2c connection is closed"
        assert closed_by_peer(h1, 8), "an idle keep-alive connection is closed"
        wait_for(lambda: metric(gw["url"], "meridian_connections_closed_total", reason="idle") >= idle_before + 2,
                 5, "both idle connections counted")
        assert "Too many open files" not in gw["proc"].output()
    finally:
        for s in socks:
            s.close()
        gw["proc"].stop()


@pytest.fixture
def own_fleet(tmp_path_factory):
    """A fleet of this test's own: its faults and records touch no other test."""
    from conftest import run_sim
    yield from run_sim(tmp_path_factory.mktemp("own-fleet"), "us-east-1,eu-west-1", 5)


def test_streams_cut_by_the_client_are_charged_for_what_passed(own_fleet, tmp_path_factory):
    """Streams the client drops at about half are logged as `client-gone` with
    the input and the output that passed (ConverseStream,
    InvokeModelWithResponseStream with an Anthropic body, /v1/messages) — not
    0/0, not input only — and never more than the fleet produced."""
    import anthropic
    import boto3
    from botocore.config import Config

    from conftest import NO_RETRY, put_faults, sim_control, sim_records

    sim = own_fleet
    d = tmp_path_factory.mktemp("cut-streams")
    gw = start_fleet_gateway(sim, d, MODELS + '\n[logging]\nsink = "file"\nfile = "invocations.ndjson"\n')
    # The drip must be where a request is processed: a geo profile's call
    # in us-east-1 may be processed in any of its destinations (the fleet
    # paces by the processing region's faults), so every region a profile
    # of the fleet lists is slowed, not only the called ones.
    regions = set(sim["regions"]) | profile_destinations(sim)
    for r in regions:
        put_faults(sim, r, {"drip_tokens_per_sec": 40})
    rt = boto3.client("bedrock-runtime", endpoint_url=gw["url"], region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="y",
                      config=Config(retries={"max_attempts": 1}, read_timeout=30))
    prompt = "tell me a long story about regions"
    try:
        cut = []
        # ConverseStream: five deltas read, then the client goes away.
        r = rt.converse_stream(modelId="chat", messages=[{"role": "user", "content": [{"text": prompt}]}],
                               inferenceConfig={"maxTokens": 200})
        deltas = 0
        for ev in r["stream"]:
            if "contentBlockDelta" in ev:
                deltas += 1
                if deltas == 5:
                    break
        r["stream"].close()
        cut.append((r["ResponseMetadata"]["RequestId"], deltas))

        # InvokeModelWithResponseStream, Anthropic's body.
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
                "messages": [{"role": "user", "content": prompt}]}
        r = rt.invoke_model_with_response_stream(modelId="chat", body=json.dumps(body))
        deltas = 0
        for ev in r["body"]:
            chunk = json.loads(ev["chunk"]["bytes"])
            if chunk["type"] == "content_block_delta":
                deltas += 1
                if deltas == 5:
                    break
        r["body"].close()
        cut.append((r["ResponseMetadata"]["RequestId"], deltas))

        # The Anthropic SDK on /v1/messages.
        client = anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0)
        with client.messages.stream(model="chat", max_tokens=200,
                                    messages=[{"role": "user", "content": prompt}]) as s:
            deltas = 0
            for ev in s:
                if ev.type == "content_block_delta":
                    deltas += 1
                    if deltas == 5:
                        break
            rid = s.response.headers["x-amzn-requestid"]
        cut.append((rid, deltas))

        for rid, deltas in cut:
            rec = wait_for(lambda: record_of(gw, rid), 30, f"the record of {rid}")
            assert rec["inferenceRegion"] in regions, (rec["inferenceRegion"], regions)
            assert rec["errorCode"] == "client-gone", rec
            assert rec["input"]["inputTokenCount"] > 0, rec
            out = rec["output"]["outputTokenCount"]
            assert out >= deltas, (out, deltas, rec)
            fleet = [x for x in sim_records(sim) if x["model_id"] == rec["modelId"]]
            produced = max(x["output_tokens"] for x in fleet)
            assert out <= 2 * produced, (out, produced)
    finally:
        for r in regions:
            sim_control(sim, "DELETE", f"/regions/{r}/faults")
        gw["proc"].stop()


def profile_destinations(sim):
    """Every region an inference profile of the fleet can process in."""
    from conftest import sim_client

    out = set()
    for called in sim["regions"]:
        b = sim_client(sim, called, "bedrock")
        for page in b.get_paginator("list_inference_profiles").paginate():
            for p in page["inferenceProfileSummaries"]:
                out.update(m["modelArn"].split(":")[3] for m in p["models"])
    return out


def record_of(gw, request_id):
    path = gw["dir"] / "invocations.ndjson"
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        if r["requestId"] == request_id:
            return r
    return None


def test_a_request_processed_outside_its_narrowed_policy_is_counted_and_flagged(own_fleet, tmp_path_factory):
    """The fleet misroutes eu-west-1's requests to us-east-1: for a request
    whose policy is the tenant's EU narrowed by its header to eu-west-1,
    meridian_residency_violations_total{policy,region} rises and the
    dashboard flags it — the same computation. Repeated residency headers
    intersect: `*` then `eu` is served in the EU."""
    from conftest import put_faults, sim_control

    sim = own_fleet
    d = tmp_path_factory.mktemp("residency")
    gw = start_fleet_gateway(sim, d, MODELS + f"""
[tenants.team]
api_keys = ["{key_hash(KEY)}"]
residency = ["eu"]
""" + ADMIN_SECTION)

    def call(headers):
        req = urllib.request.Request(gw["url"] + "/model/chat/converse", method="POST",
                                     data=json.dumps({"messages": [{"role": "user", "content": [{"text": "r"}]}],
                                                      "inferenceConfig": {"maxTokens": 4}}).encode())
        req.add_header("content-type", "application/json")
        req.add_header("authorization", f"Bearer {KEY}")
        for k, v in headers:
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.headers

    try:
        assert metric(gw["url"], "meridian_residency_violations_total") == 0
        # Before the fault: no violation.
        call([("x-meridian-residency", "eu")])
        put_faults(sim, "eu-west-1", {"misroute_to": "us-east-1"})
        h = call([("x-meridian-residency", "eu")])
        # Called in the EU, processed (the answer says) in us-east-1.
        assert h["x-meridian-route"] == "first:eu-west-1:success" and h["x-meridian-region"] == "us-east-1", dict(h)
        with urllib.request.urlopen(gw["url"] + "/metrics", timeout=5) as r:
            lines = [l for l in r.read().decode().splitlines()
                     if l.startswith("meridian_residency_violations_total{")]
        assert len(lines) == 1 and 'region="us-east-1"' in lines[0] and lines[0].endswith(" 1"), lines
        assert "x-meridian-residency" in lines[0], "the narrowed policy is the one counted"
        req = urllib.request.Request(gw["url"] + "/ui/api/snapshot", headers={"authorization": f"Bearer {ADMIN}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            violations = json.loads(r.read())["residency"]["violations"]
        assert [(v["region"], v["count"]) for v in violations] == [("us-east-1", 1)], violations
        assert "residency violation" in gw["proc"].output()
    finally:
        sim_control(sim, "DELETE", "/regions/eu-west-1/faults")
        gw["proc"].stop()


def test_repeated_residency_headers_intersect(sim, tmp_path_factory):
    import http.client

    d = tmp_path_factory.mktemp("residency-headers")
    gw = start_fleet_gateway(sim, d, MODELS)
    try:
        served = set()
        for order in (("*", "eu"), ("eu", "*")):
            c = http.client.HTTPConnection("127.0.0.1", gw["port"], timeout=30)
            c.putrequest("POST", "/model/chat/converse")
            c.putheader("content-type", "application/json")
            for v in order:
                c.putheader("x-meridian-residency", v)
            body = json.dumps({"messages": [{"role": "user", "content": [{"text": "r"}]}],
                               "inferenceConfig": {"maxTokens": 4}}).encode()
            c.putheader("content-length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            r.read()
            assert r.status == 200
            served.add(r.getheader("x-meridian-region"))
            c.close()
        assert served and all(r.startswith("eu-") for r in served), served
    finally:
        gw["proc"].stop()
