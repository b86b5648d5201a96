"""The operator's view against real processes: invocation records exported
to a real S3-compatible server (moto's server, from PyPI) exactly once across
an S3 restart and a SIGKILL of the gateway; /metrics checked by promtool;
/ready following the simulated fleet; /status naming the detection step and
the bucket's region."""
import base64
import gzip
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import pytest

from conftest import NO_RETRY, Proc, clean_env, free_port, metric, wait_for, wait_http

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "meridian-logs"
S3_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class Moto:
    """moto's S3 server on a fixed port, restartable (it keeps nothing)."""

    def __init__(self, d):
        self.d, self.port, self.p = d, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        log = open(self.d / "moto.log", "a")
        self.p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=clean_env(self.d, **S3_CREDS))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/", timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise TimeoutError("moto did not start")
        self.s3().create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(timeout=10)

    def s3(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="eu-west-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def objects(self):
        """Every object: key → its records (gunzipped NDJSON)."""
        out, s3 = {}, self.s3()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for o in page.get("Contents", []):
                body = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
                out[o["Key"]] = [json.loads(line) for line in gzip.decompress(body).decode().splitlines() if line]
        return out


# A simulated US gateway exposing one model as "chat"; tests append sections.
US_CHAT = """
region = "us-east-1"
default_residency = ["us"]

[upstream]
mode = "simulated"

[models.chat]
model = "claude-sonnet-4-5"
"""


def config(moto_url):
    return US_CHAT + f"""
[logging]
sink = "file"
file = "invocations.ndjson"

[logging.s3]
bucket = "{BUCKET}"
prefix = "bedrock-logs"
endpoint = "{moto_url}"
spool_dir = "spool"
flush_interval_ms = 300
segment_bytes = 6000
"""


def start_gateway(d, port):
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(d, **S3_CREDS), d, d / "serve.log")
    wait_http(f"http://127.0.0.1:{port}/health", proc)
    return proc


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def send(url, n, tag, model="chat"):
    """n requests, half streaming, one at a time; the request IDs clients got."""
    c = boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                     aws_access_key_id="AKIDCLIENT", aws_secret_access_key="secret", config=NO_RETRY)
    ids = []
    for i in range(n):
        msgs = [{"role": "user", "content": [{"text": f"{tag} {i}"}]}]
        if i % 2:
            r = c.converse_stream(modelId=model, messages=msgs, inferenceConfig={"maxTokens": 16})
            events = list(r["stream"])
            assert "messageStop" in events[-2] or "messageStop" in events[-1]
        else:
            r = c.converse(modelId=model, messages=msgs, inferenceConfig={"maxTokens": 16})
            assert r["output"]["message"]["content"][0]["text"]
        ids.append(r["ResponseMetadata"]["RequestId"])
    return ids


def ids_in(objects):
    return [r["requestId"] for recs in objects.values() for r in recs]


def test_every_record_reaches_s3_exactly_once_across_an_s3_restart_and_a_sigkill(tmp_path):
    moto = Moto(tmp_path)
    moto.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "meridian.toml").write_text(config(moto.url))
    gw = start_gateway(tmp_path, port)
    try:
        # /status: the detection step, and the bucket's region from HeadBucket.
        status = wait_for(lambda: (s := get_json(url + "/status")[1])["invocation_log"]["s3"]["bucket_region"] and s,
                          15, "HeadBucket")
        assert status["region_source"] == "meridian.toml"
        assert status["invocation_log"]["s3"]["bucket_region"] == "eu-west-1"
        assert status["invocation_log"]["s3"]["reachable"] is True

        sent = send(url, 20, "before")
        before = wait_for(lambda: (o := moto.objects()) and len(ids_in(o)) >= 20 and o, 20, "first uploads")

        moto.stop()  # S3 goes away mid-run
        sent += send(url, 20, "during")
        wait_for(lambda: get_json(url + "/status")[1]["invocation_log"]["s3"]["reachable"] is False, 15,
                 "the gateway noticing S3 is down")
        moto.start()  # a new, empty server on the same port
        sent += send(url, 10, "after")
        wait_for(lambda: len(ids_in(moto.objects())) >= 30, 30, "uploads after S3 came back")

        unflushed = send(url, 6, "unflushed")
        sent += unflushed
        gw.p.send_signal(signal.SIGKILL)  # records still in the spool
        gw.p.wait(timeout=10)
        gw = start_gateway(tmp_path, port)
        sent += send(url, 6, "restarted")
        everything = lambda: {**before, **moto.objects()}  # noqa: E731  one object per key, as S3 keeps it
        wait_for(lambda: set(sent) <= set(ids_in(everything())), 30, "every record uploaded")
        time.sleep(1)  # one more flush: nothing else may arrive

        objects = everything()
        got = ids_in(objects)
        assert sorted(got) == sorted(sent), "each record exactly once, nothing else"
        assert len(sent) == 62 and len(set(sent)) == 62
        for key, recs in objects.items():
            parts = key.split("/")
            assert parts[0] == "bedrock-logs" and parts[1].startswith("dt=") and parts[2].startswith("hour=")
            assert key.endswith(".ndjson.gz")
            for r in recs:
                assert parts[3] == f"region={r['inferenceRegion']}"
                assert r["timestamp"].startswith(parts[1][3:]) and r["timestamp"][11:13] == parts[2][5:]
        # Bedrock's log schema, plus Meridian's routing.
        r = next(r for recs in objects.values() for r in recs if r["operation"] == "ConverseStream")
        assert r["schemaType"] == "ModelInvocationLog" and r["schemaVersion"] == "1.0"
        assert r["modelId"].startswith("us.anthropic.claude-sonnet-4-5")
        assert r["input"]["inputTokenCount"] > 0 and r["output"]["outputTokenCount"] > 0
        assert r["inferenceRegion"] in ("us-east-1", "us-east-2", "us-west-1", "us-west-2")
        assert r["meridian"]["decision"]["attempts"][0]["outcome"] == "success"
        # The local file sink has every record too, but for those still queued
        # for its writer thread when SIGKILL came (only the S3 spool is crash-safe).
        lines = (tmp_path / "invocations.ndjson").read_text().splitlines()
        in_file = [json.loads(l)["requestId"] for l in lines]
        assert len(in_file) == len(set(in_file)) and set(in_file) <= set(sent)
        assert set(sent) - set(in_file) <= set(unflushed), set(sent) - set(in_file)
        assert not list((tmp_path / "spool").glob("*.ndjson")), "the spool is empty once all is uploaded"
    finally:
        gw.stop()
        moto.stop()


def test_metrics_pass_promtool_and_ready_follows_the_fleet(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "meridian.toml").write_text("""
region = "us-east-1"
default_residency = ["us-east-1", "us-west-2"]

[upstream]
mode = "simulated"

[models.small]
model = "claude-3-haiku"

[logging]
sink = "none"
""")
    assert shutil.which("promtool"), "promtool is needed (scripts/test installs Debian's prometheus package)"
    gw = start_gateway(tmp_path, port)
    try:
        send(url, 4, "metrics", model="small")
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'meridian_requests_total{model="small",operation="Converse",outcome="success"} 2' in text
        assert "meridian_time_to_first_token_seconds_bucket" in text
        assert "meridian_output_tokens_total{" in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        rules = subprocess.run(["promtool", "check", "rules", str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
                               capture_output=True, text=True)
        assert rules.returncode == 0, rules.stdout + rules.stderr
        assert "SUCCESS" in rules.stdout

        # /ready: every candidate of `small` down in the fleet → not ready; back → ready.
        assert get_json(url + "/ready")[0] == 200
        # The in-process fleet's control API: its address in /status, its token only in the log.
        control = get_json(url + "/status")[1]["upstream"]["detail"].split("control API ")[1].split()[0]
        token = re.search(r"token=(\w+)", gw.output()).group(1)
        auth = {"authorization": f"Bearer {token}"}
        try:
            urllib.request.urlopen(urllib.request.Request(f"{control}/records"), timeout=5)
            raise AssertionError("the control API answered without its token")
        except urllib.error.HTTPError as e:
            assert e.code == 401
        for region in ("us-east-1", "us-west-2"):
            req = urllib.request.Request(f"{control}/regions/{region}/faults", method="PUT",
                                         data=b'{"outage": true}', headers={"content-type": "application/json", **auth})
            urllib.request.urlopen(req, timeout=5).read()
        code, body = wait_for(lambda: (r := get_json(url + "/ready"))[0] == 503 and r, 15, "not ready")
        assert body["ready"] is False and body["models"][0]["healthy"] == 0
        for region in ("us-east-1", "us-west-2"):
            req = urllib.request.Request(f"{control}/regions/{region}/faults", method="DELETE", headers=auth)
            urllib.request.urlopen(req, timeout=5).read()
        wait_for(lambda: get_json(url + "/ready")[0] == 200, 15, "ready again")
        # The log went to a file, not a terminal: plain text, no colour codes.
        log = gw.output()
        assert "endpoint reachability changed" in log and "\x1b[" not in log, log[-2000:]
    finally:
        gw.stop()


class HttpReceiver:
    """An OTLP/HTTP receiver (http/json or http/protobuf): each batch parsed by
    the OpenTelemetry protobuf definitions (opentelemetry-proto from PyPI), so
    unknown or misspelt fields fail."""

    def __init__(self, protocol):
        import http.server
        import threading

        self.protocol, self.batches, self.errors = protocol, [], []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    receiver.batches.append(receiver.parse(self.path, self.headers["content-type"], body))
                except Exception as e:  # reported by the test, not lost in a thread
                    receiver.errors.append(repr(e))
                self.send_response(200)
                self.send_header("content-type", self.headers["content-type"])
                self.end_headers()
                self.wfile.write(b"{}" if receiver.protocol == "http/json" else b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def parse(self, path, ctype, body):
        from google.protobuf import json_format
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        assert path == "/v1/traces", path
        if self.protocol == "http/protobuf":
            assert ctype == "application/x-protobuf", ctype
            return ExportTraceServiceRequest.FromString(body)
        assert ctype == "application/json", ctype
        # OTLP/JSON writes trace and span IDs as hex, where the plain protobuf
        # JSON mapping expects base64: convert, then parse strictly.
        doc = json.loads(body)
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    for k in ("traceId", "spanId", "parentSpanId"):
                        if k in sp:
                            assert len(sp[k]) == (32 if k == "traceId" else 16), sp[k]
                            sp[k] = base64.b64encode(bytes.fromhex(sp[k])).decode()
        return json_format.Parse(json.dumps(doc), ExportTraceServiceRequest())

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver:
    """An OTLP/gRPC receiver: a real gRPC server (grpcio from PyPI, its C core)
    serving opentelemetry-proto's TraceService, which decodes each batch."""

    def __init__(self):
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.protocol, self.batches, self.errors = "grpc", [], []
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                receiver.batches.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self):
        self.server.stop(grace=None)


def start_traced_gateway(d, receiver):
    """meridian serve exporting its spans to `receiver`; the gateway and its URL."""
    port = free_port()
    (d / "meridian.toml").write_text(US_CHAT + f"""
[logging]
sink = "none"

[tracing]
otlp_endpoint = "{receiver.endpoint}"
otlp_protocol = "{receiver.protocol}"
service_name = "meridian-e2e"
""")
    return start_gateway(d, port), f"http://127.0.0.1:{port}"


def span_attrs(sp):
    return {a.key: (a.value.string_value or a.value.int_value) for a in sp.attributes}


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc", "http/json"])
def test_traces_reach_an_otlp_receiver_over_each_protocol(tmp_path, protocol):
    """Spans over OTLP/HTTP (protobuf, JSON) and OTLP/gRPC reach a receiver that
    decodes them with the OpenTelemetry definitions; the caller's trace ID is
    kept, the GenAI attributes are set, and the exporter counts what it sent."""
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver(protocol)
    gw, url = start_traced_gateway(tmp_path, receiver)
    try:
        parent_trace, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        c = boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id="AKIDCLIENT", aws_secret_access_key="secret", config=NO_RETRY)
        c.meta.events.register("before-sign.bedrock-runtime.Converse",
                               lambda request, **_: request.headers.__setitem__(
                                   "traceparent", f"00-{parent_trace}-{parent_span}-01"))
        rid = c.converse(modelId="chat", messages=[{"role": "user", "content": [{"text": "trace me"}]}],
                         inferenceConfig={"maxTokens": 8})["ResponseMetadata"]["RequestId"]
        send(url, 2, "traced")

        def spans():
            assert not receiver.errors, receiver.errors
            out = []
            for req in list(receiver.batches):
                for rs in req.resource_spans:
                    attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                    assert attrs["service.name"] == "meridian-e2e"
                    for ss in rs.scope_spans:
                        assert ss.scope.name == "meridian"
                        out.extend(ss.spans)
            return out

        all_spans = wait_for(lambda: (s := spans()) and len(s) >= 6 and s, 15, f"spans over {protocol}")
        root = next(sp for sp in all_spans if span_attrs(sp).get("meridian.request_id") == rid)
        assert root.trace_id.hex() == parent_trace and root.parent_span_id.hex() == parent_span
        assert root.kind == 2 and root.status.code == 1
        a = span_attrs(root)
        assert a["meridian.model"] == "chat" and a["meridian.outcome"] == "success"
        assert a["cloud.region"] in ("us-east-1", "us-east-2", "us-west-1", "us-west-2")
        assert a["meridian.account"] == "default" and a["http.response.status_code"] == 200
        assert a["meridian.surface"] == "runtime" and a["meridian.attempts"] == 1
        # GenAI semantic conventions.
        assert a["gen_ai.system"] == a["gen_ai.provider.name"] == "aws.bedrock"
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "chat"
        assert "claude-sonnet-4-5" in a["gen_ai.response.model"], a
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        attempts = [sp for sp in all_spans if sp.parent_span_id == root.span_id]
        assert len(attempts) == 1 and attempts[0].kind == 3
        b = span_attrs(attempts[0])
        assert b["cloud.region"] == "us-east-1" and b["meridian.reason"] == "first" and b["meridian.outcome"] == "success"
        assert b["gen_ai.request.model"] == a["gen_ai.response.model"] and b["gen_ai.system"] == "aws.bedrock"
        assert root.start_time_unix_nano <= attempts[0].start_time_unix_nano <= attempts[0].end_time_unix_nano
        # Every span of the other requests has its own trace.
        others = {sp.trace_id for sp in all_spans if sp.kind == 2} - {root.trace_id}
        assert len(others) == 2
        exported = wait_for(lambda: (n := metric(url, "meridian_trace_spans_exported_total")) >= len(all_spans) and n,
                            5, "exported spans counted")
        assert exported >= 6
        assert metric(url, "meridian_trace_spans_dropped_total", reason="export_failed") == 0
    finally:
        gw.stop()
        receiver.stop()


def test_a_stopped_collector_costs_requests_nothing_and_drops_are_counted(tmp_path):
    """The collector goes away: requests are answered as before, and the spans
    that could not be delivered are counted as dropped, not retried forever."""
    receiver = GrpcReceiver()
    gw, url = start_traced_gateway(tmp_path, receiver)
    try:
        send(url, 2, "before")
        wait_for(lambda: metric(url, "meridian_trace_spans_exported_total") >= 4, 10, "spans exported")
        receiver.stop()
        ids = send(url, 6, "after")
        assert len(ids) == 6
        dropped = wait_for(
            lambda: (n := metric(url, "meridian_trace_spans_dropped_total", reason="export_failed")) >= 12 and n,
            15, "spans to a stopped collector counted as dropped")
        assert dropped >= 12
        assert metric(url, "meridian_trace_spans_dropped_total", reason="queue_full") == 0
        assert "spans dropped" in gw.output()
    finally:
        gw.stop()


def test_a_latency_exemplar_names_a_trace_the_collector_received(tmp_path):
    """A real Prometheus (Debian's, exemplar storage on) scrapes Meridian's
    OpenMetrics exposition: the latency histogram's exemplars carry trace IDs
    of request spans the OTLP/gRPC receiver got."""
    assert shutil.which("prometheus"), "prometheus is needed (scripts/test installs Debian's prometheus package)"
    receiver = GrpcReceiver()
    gw, url = start_traced_gateway(tmp_path, receiver)
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: meridian
    static_configs:
      - targets: ["{url.removeprefix('http://')}"]
""")
    prom_log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--enable-feature=exemplar-storage"],
        stdout=prom_log, stderr=prom_log, cwd=tmp_path)
    prom_url = f"http://127.0.0.1:{prom_port}"
    try:
        ids = send(url, 6, "exemplar")
        assert len(ids) == 6

        def exemplar_traces():
            now = time.time()
            q = urllib.parse.urlencode({"query": "meridian_request_duration_seconds_bucket",
                                        "start": now - 600, "end": now + 60})
            try:
                with urllib.request.urlopen(f"{prom_url}/api/v1/query_exemplars?{q}", timeout=5) as r:
                    doc = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError):
                return None
            return {e["labels"]["trace_id"] for series in doc["data"] for e in series["exemplars"]}

        traces = wait_for(exemplar_traces, 30, "exemplars scraped by Prometheus")
        with urllib.request.urlopen(f"{prom_url}/api/v1/targets", timeout=5) as r:
            target = json.loads(r.read())["data"]["activeTargets"][0]
        assert target["health"] == "up" and target["lastError"] == "", target
        spans = wait_for(
            lambda: (s := {sp.trace_id.hex() for req in list(receiver.batches) for rs in req.resource_spans
                           for ss in rs.scope_spans for sp in ss.spans if sp.kind == 2}) >= traces and s,
            15, "the exemplars' traces among the received request spans")
        assert traces and traces <= spans, (traces, spans)
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        prom_log.close()
        gw.stop()
        receiver.stop()
