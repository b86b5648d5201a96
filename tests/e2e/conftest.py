"""Fixtures that run real Meridian processes on 127.0.0.1.

Every process is started with a clean environment (no AWS credentials, no
metadata service) and is stopped at teardown; every wait is bounded.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("MERIDIAN_BIN", str(ROOT / "target" / "debug" / "meridian"))
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=30, connect_timeout=5)
NO_VALIDATION = Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False)


def pytest_report_header(config):
    """The client versions this run used (the pins in requirements*.txt,
    and Claude Code as npm installed it)."""
    from importlib.metadata import PackageNotFoundError, version
    libs = []
    for name in ("boto3", "botocore", "openai", "openai-agents", "anthropic", "langchain-aws"):
        try:
            libs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            libs.append(f"{name} missing")
    claude = ROOT / ".claude-code" / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
    try:
        cc = subprocess.run([os.environ.get("CLAUDE_CODE_BIN", str(claude)), "--version"],
                            capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        cc = "missing"
    codex = ROOT / ".codex-cli" / "node_modules" / ".bin" / "codex"
    try:
        cx = subprocess.run([os.environ.get("CODEX_BIN", str(codex)), "--version"],
                            capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        cx = "missing"
    return ["clients: " + ", ".join(libs), f"Claude Code: {cc}", f"Codex CLI: {cx}"]


APP_PROFILE = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"
APP_PROFILES = """
[[application_profiles]]
arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234efgh"
model = "claude-sonnet-4-5"
regions = ["us-east-1", "us-west-2"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(url, name, **labels):
    """The value of one series in `url`/metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"{name}{{{want}}}" if want else name
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def clean_env(home, **extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "AWS_EC2_METADATA_DISABLED": "true", "MERIDIAN_LOG": "warn"}
    env.update(extra)
    return env


class Proc:
    def __init__(self, args, env, cwd, log, stdout=None, nofile=None):
        """`stdout`: where the process's stdout goes (default: the log file with stderr);
        `nofile`: its open-file limit (soft and hard), as `ulimit -n` would set it."""
        self.log = log
        out = open(log, "w")

        def limit():
            if nofile is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.p = subprocess.Popen([BIN, *args], env=env, cwd=cwd, stdout=out if stdout is None else stdout,
                                  stderr=out, preexec_fn=limit if nofile is not None else None)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)

    def output(self):
        return Path(self.log).read_text()


def wait_http(url, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"process exited early:\n{proc.output()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return json.loads(r.read() or b"null")
        except Exception:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s:\n{proc.output()}")


def wait_file(path, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return json.loads(path.read_text())
        if proc.p.poll() is not None:
            raise RuntimeError(f"process exited early:\n{proc.output()}")
        time.sleep(0.1)
    raise TimeoutError(f"{path} was not written:\n{proc.output()}")


def run_sim(d, regions, seed, *extra):
    """`meridian sim` over `regions` in directory `d`: yields its manifest,
    stops it afterwards (use with `yield from` in a fixture)."""
    manifest = d / "manifest.json"
    proc = Proc(["sim", "--regions", regions, "--seed", str(seed), "--manifest", str(manifest), *extra],
                clean_env(d), d, d / "sim.log")
    try:
        m = wait_file(manifest, proc)
        wait_http(m["control_url"] + "/regions", proc)
        yield m
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    """A standalone simulated fleet: `meridian sim`."""
    d = tmp_path_factory.mktemp("sim")
    (d / "profiles.toml").write_text(APP_PROFILES)
    yield from run_sim(d, "us-east-1,us-east-2,us-west-1,us-west-2,eu-west-1", 7,
                       "--config", str(d / "profiles.toml"))


def sim_control(sim, method, path, body=None):
    """A call to the fleet's control API; its JSON answer."""
    req = urllib.request.Request(sim["control_url"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"null")


def put_faults(sim, region, faults):
    return sim_control(sim, "PUT", f"/regions/{region}/faults", faults)


def sim_records(sim):
    """The fleet's records of model invocations. Control-plane reads (no
    model ID: every gateway's catalog refresh lists profiles at start-up)
    are left out, so they never count as traffic."""
    return [x for x in sim_control(sim, "GET", "/records") if x["model_id"]]


def key_hash(key):
    """A key as the config stores it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def headless_chromium(profile, *flags):
    """Debian's chromium driven by chromedriver, headless, its console logged;
    the caller quits it."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "scripts/test installs Debian's chromium and chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", *flags):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    return driver


def sim_client(sim, region, service="bedrock-runtime", config=NO_RETRY):
    creds = sim["credentials"]
    return boto3.client(service, endpoint_url=sim["regions"][region]["url"], region_name=region,
                        aws_access_key_id=creds["access_key_id"], aws_secret_access_key=creds["secret_access_key"],
                        config=config)


def serve_with(d, toml):
    """`meridian serve` in directory `d` with `toml` as its meridian.toml:
    yields its URL, stops it afterwards (use with `yield from` in a fixture)."""
    (d / "meridian.toml").write_text(toml)
    port = free_port()
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(d), d, d / "serve.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def zero_config_gateway(tmp_path_factory):
    """`meridian serve` with an empty environment and no config file."""
    d = tmp_path_factory.mktemp("zero")
    port = free_port()
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(d), d, d / "serve.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield {"url": f"http://127.0.0.1:{port}", "proc": proc}
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def gateway(sim, tmp_path_factory):
    """`meridian serve` calling the standalone fleet as if it were AWS: real
    SigV4 with the fleet's credential, endpoint overrides per region."""
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("gw"), """
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"

[models.haiku]
model = "claude-3-haiku"
""" + APP_PROFILES)


def fleet_gateway(sim, d, models, env=None):
    """Runs `meridian serve` in us-east-1 with `models` (TOML) calling the
    standalone fleet through a named AWS profile; yields its URL and process.
    `env`: more environment variables for the gateway."""
    gw = start_fleet_gateway(sim, d, models, env=env)
    try:
        yield gw
    finally:
        gw["proc"].stop()


def start_fleet_gateway(sim, d, models, scheme="http", wait=True, env=None, nofile=None):
    """Starts `meridian serve` as `fleet_gateway` does; the caller stops
    `result["proc"]`. `models` is any TOML to add (models, tenants, state, …);
    `nofile`: the process's open-file limit."""
    endpoints = ", ".join(f'{r} = "{v["url"]}"' for r, v in sim["regions"].items())
    mantle = ", ".join(f'{r} = "{v["mantle_url"]}"' for r, v in sim["regions"].items() if v.get("mantle_url"))
    (d / "meridian.toml").write_text(f"""
region = "us-east-1"
{models}
[upstream]
mode = "aws"
endpoints = {{ {endpoints} }}
mantle_endpoints = {{ {mantle} }}

[[upstream.accounts]]
name = "sim-account"
profile = "fleet"
""")
    # The fleet's credential lives in a named profile, resolved through aws-config.
    creds = sim["credentials"]
    (d / "credentials").write_text(
        f"[fleet]\naws_access_key_id = {creds['access_key_id']}\naws_secret_access_key = {creds['secret_access_key']}\n")
    (d / "config").write_text("[profile fleet]\nregion = us-east-1\n")
    port = free_port()
    env = clean_env(d, **{"AWS_SHARED_CREDENTIALS_FILE": str(d / "credentials"),
                          "AWS_CONFIG_FILE": str(d / "config"), **(env or {})})
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], env, d, d / "serve.log", nofile=nofile)
    url = f"{scheme}://127.0.0.1:{port}"
    if wait:
        try:
            if scheme == "http":
                wait_http(f"{url}/health", proc)
            else:
                wait_port(port, proc)
        except Exception:
            proc.stop()
            raise
    return {"url": url, "proc": proc, "dir": d, "port": port}


def wait_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"process exited early:\n{proc.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open within {timeout}s:\n{proc.output()}")


class Redis:
    """A `redis-server` on a free port, persisting nothing."""

    def __init__(self, d, port=None):
        self.port = port or free_port()
        self.dir = d
        self.start()

    def start(self):
        self.p = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=5)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A `redis-server` of the test module's own."""
    r = Redis(tmp_path_factory.mktemp("redis"))
    yield r
    r.kill()


def gw_client(gw, service="bedrock-runtime", config=NO_RETRY):
    return boto3.client(service, endpoint_url=gw["url"], region_name="us-east-1",
                        aws_access_key_id="AKIDCLIENT", aws_secret_access_key="client-secret", config=config)


def invocation_record(gw, request_id, file="invocations.ndjson"):
    """The invocation record of `request_id` in the gateway's file sink,
    waiting up to 10 s for the log writer."""
    path = gw["dir"] / file
    deadline = time.time() + 10
    while time.time() < deadline:
        for line in path.read_text().splitlines() if path.exists() else []:
            r = json.loads(line)
            if r["requestId"] == request_id:
                return r
        time.sleep(0.05)
    raise AssertionError(f"no record for {request_id}")


def wait_for(pred, timeout, what):
    """`pred()`'s first truthy value within `timeout` seconds, polled every 0.1 s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")
