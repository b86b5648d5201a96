"""Deployment, as an operator runs it: the README's container, Kubernetes and
ECS commands (every line not marked "needs …"), the image built with buildah
and run with podman, the Kubernetes renders validated against Kubernetes
1.30's schemas and by checkov, the CloudFormation template by cfn-lint and
checkov and against what `meridian iam-policy` generates and what
deploy/prometheus/alerts.yml alerts on, and SIGTERM draining behind /ready.

The tools come from scripts/test: buildah, podman and runc from Debian,
kubectl from the machine, hadolint, cfn-lint, checkov and kubernetes-validate
from PyPI in .venv-deploy."""
import json
import tomllib
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from math import prod
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, Proc, clean_env, free_port, gw_client, wait_for, wait_http

DEPLOY_BIN = ROOT / ".venv-deploy" / "bin"
TOOLS_PATH = f"{DEPLOY_BIN}:{Path(BIN).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
IMAGE = "localhost/meridian:latest"


def readme_block(heading, index=0):
    """The `index`-th ```sh block under README heading `heading`, as
    (command, needs) pairs: `needs` is the "needs …" note of a line the test
    cannot run (a cluster, an AWS account, Docker), else None."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else len(text)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    out = []
    for line in blocks[index].splitlines():
        command, _, comment = line.partition("   #")
        needs = re.search(r"needs [^.]*", comment)
        out.append((command.strip(), needs.group(0) if needs else None))
    return out


def sh(command, cwd=ROOT, env=None, timeout=600, check=True):
    """Runs one README command line with bash, the deploy tools and the
    debug `meridian` first on PATH."""
    e = dict(os.environ, PATH=TOOLS_PATH, AWS_EC2_METADATA_DISABLED="true")
    e.pop("MERIDIAN_REDIS_URL", None)
    e.update(env or {})
    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{command}\nexit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_every_readme_deploy_command_is_run_here_or_says_what_it_needs():
    """The blocks this module runs: each line either runs here or names what
    it needs, and only commands that truly need a cluster, AWS or Docker do."""
    blocks = [readme_block("## Run it in a container"), readme_block("## Deploy on Kubernetes or ECS", 0),
              readme_block("## Deploy on Kubernetes or ECS", 1)]
    for block in blocks:
        assert block, "an empty README block"
        for command, needs in block:
            if needs:
                assert re.match(r"(docker |kubectl (apply|create)|aws )", command), (command, needs)
            else:
                assert not re.match(r"(docker |kubectl (apply|create)|aws )", command), command


# --- the container -------------------------------------------------------

def dockerfile_final_stage():
    """Instruction → value of the Dockerfile's last stage (line continuations joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text[text.rindex("\nFROM "):]
    out = {}
    for line in stage.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.setdefault(word, []).append(" ".join(rest.split()))
    return out


@pytest.fixture(scope="module")
def image():
    """The README's `scripts/image`, then the image's config from podman."""
    (command, needs), = [c for c in readme_block("## Run it in a container") if c[0].startswith("scripts/image")]
    assert needs is None
    sh(command, timeout=1200)
    inspect = json.loads(sh(f"podman image inspect {IMAGE}").stdout)[0]
    return inspect


def test_the_dockerfile_passes_hadolint_and_the_buildah_image_matches_it(image):
    (lint, _), = [c for c in readme_block("## Run it in a container") if c[0].startswith("hadolint")]
    sh(lint)
    # hadolint fails on what it flags: a Dockerfile with a known mistake proves it runs.
    bad = sh("hadolint - <<'EOF'\nFROM debian\nRUN cd /tmp && apt-get install curl\nEOF", check=False)
    assert bad.returncode != 0 and "DL3006" in bad.stdout, bad.stdout

    stage = dockerfile_final_stage()
    cfg = image["Config"]
    assert stage["USER"] == [cfg["User"]] == ["65532:65532"]
    assert stage["WORKDIR"] == [cfg["WorkingDir"]] == ["/var/lib/meridian"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["MERIDIAN_LISTEN"] == "0.0.0.0:8080" and "MERIDIAN_LISTEN=0.0.0.0:8080" in stage["ENV"][0]
    assert stage["EXPOSE"] == ["8080"] and set(cfg["ExposedPorts"]) == {"8080/tcp"}
    assert stage["STOPSIGNAL"] == [cfg["StopSignal"]] == ["SIGTERM"]
    assert json.loads(stage["ENTRYPOINT"][0]) == cfg["Entrypoint"] == ["/usr/local/bin/meridian"]
    assert json.loads(stage["CMD"][0]) == cfg["Cmd"] == ["serve"]
    check = stage["HEALTHCHECK"][0]
    assert json.loads(check[check.index("CMD ") + 4:]) == image["Healthcheck"]["Test"][1:]
    assert image["Healthcheck"]["Test"][1:] == ["/usr/local/bin/meridian", "probe", "--path", "/ready"]
    # Small: the stripped binary and its libraries, nothing else.
    assert image["Size"] < 40 * 1024 * 1024, image["Size"]


# This sandbox's kernel refuses crun's cgroup setup and raising RLIMIT_NPROC;
# runc with limits no higher than the host's runs containers here.
SANDBOX_CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


def container_runtime(tmp_path):
    """Environment under which podman can start the image, or None with why
    it cannot (then only the run step is skipped)."""
    tried = []
    conf = tmp_path / "containers.conf"
    conf.write_text(SANDBOX_CONTAINERS_CONF)
    for env in ({}, {"CONTAINERS_CONF": str(conf)}):
        r = sh(f"podman run --rm --network host {IMAGE} --version", env=env, check=False, timeout=120)
        if r.returncode == 0:
            assert r.stdout.startswith("meridian "), r.stdout
            return env, None
        # 125/126: podman or the OCI runtime could not start a container at all.
        # Anything else means the image itself is broken.
        assert r.returncode in (125, 126), f"the image fails: {r.returncode}\n{r.stdout}\n{r.stderr}"
        tried.append(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return None, "; ".join(tried)


def test_the_image_serves_converse_checks_its_health_and_stops_cleanly_on_sigterm(image, tmp_path):
    env, why = container_runtime(tmp_path)
    if env is None:
        pytest.skip(f"this machine cannot run containers ({why}); the image was built and inspected")
    (run, _), = [c for c in readme_block("## Run it in a container") if c[0].startswith("podman run")]
    port = free_port()
    name = f"meridian-test-{port}"
    (tmp_path / "meridian.toml").write_text('region = "us-east-1"\n[upstream]\nmode = "simulated"\n'
                                            '[models.chat]\nmodel = "claude-sonnet-4-5"\n')
    # The README's command, detached and named, on a free port, and kept away
    # from instance metadata (tests never call it).
    command = run.replace("podman run --rm", f"podman run -d --name {name} -e AWS_EC2_METADATA_DISABLED=true")
    command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert command != run
    sh(command, cwd=tmp_path, env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return json.loads(urllib.request.urlopen(url + "/status", timeout=2).read())
            except (urllib.error.URLError, ConnectionError):
                return None
        status = wait_for(up, 30, "the container's /status")
        assert urllib.request.urlopen(url + "/health", timeout=2).status == 200
        assert status["region"] == "us-east-1" and status["region_source"] == "meridian.toml", status
        assert status["upstream"]["mode"] == "simulated"
        r = gw_client({"url": url}).converse(modelId="chat", messages=[{"role": "user", "content": [{"text": "in a box"}]}],
                                             inferenceConfig={"maxTokens": 40})
        assert "You said: in a box" in r["output"]["message"]["content"][0]["text"]
        # The image's own HEALTHCHECK: `meridian probe` inside the container.
        health = sh(f"podman healthcheck run {name}", env=env, check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        top = sh(f"podman inspect {name} --format '{{{{.Config.User}}}}'", env=env).stdout.strip()
        assert top == "65532:65532"
        sh(f"podman stop -t 40 {name}", env=env, timeout=60)
        state = json.loads(sh(f"podman inspect {name} --format '{{{{json .State}}}}'", env=env).stdout)
        logs = sh(f"podman logs {name}", env=env).stderr
        assert state["ExitCode"] == 0, logs
        assert "finishing requests under way" in logs and "stopped" in logs, logs
    finally:
        sh(f"podman rm -f {name}", env=env, check=False)


# --- SIGTERM behind /ready -------------------------------------------------

def test_sigterm_turns_ready_to_503_while_it_still_serves_then_exits(tmp_path):
    port = free_port()
    # The fleet on purpose: `auto` falling back to it would never be ready.
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"],
                clean_env(tmp_path, MERIDIAN_DRAIN_DELAY_S="3", MERIDIAN_LOG="info",
                          MERIDIAN_CONFIG_TOML='[upstream]\nmode = "simulated"\n'), tmp_path, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc)
        wait_for(lambda: urllib.request.urlopen(url + "/ready", timeout=2).status == 200, 20, "/ready")
        proc.p.send_signal(signal.SIGTERM)

        def ready_status():
            try:
                urllib.request.urlopen(url + "/ready", timeout=2)
                return None
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
        code, body = wait_for(ready_status, 2, "/ready to answer 503")
        assert code == 503 and body["draining"] is True and body["ready"] is False
        # Still serving while load balancers take it out.
        assert urllib.request.urlopen(url + "/health", timeout=2).status == 200
        r = gw_client({"url": url}).converse(modelId="claude-sonnet-4-5",
                                             messages=[{"role": "user", "content": [{"text": "last call"}]}])
        assert "You said: last call" in r["output"]["message"]["content"][0]["text"]
        assert proc.p.wait(timeout=40) == 0
        log = proc.output()
        assert log.index("/ready answers 503") < log.index("no longer accepting connections")
    finally:
        proc.stop()


# --- Kubernetes ------------------------------------------------------------

def rendered(overlay):
    """`kubectl kustomize` of an overlay, as the README runs it: name → document."""
    (command, _), = [c for c in readme_block("## Deploy on Kubernetes or ECS", 0)
                     if c[0].startswith("kubectl kustomize") and c[0].split()[2].endswith(overlay)]
    text = sh(command).stdout
    return text, {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(text) if d}


def test_the_kubernetes_renders_validate_and_hold_together(tmp_path):
    renders = tmp_path / "renders"
    renders.mkdir()
    for overlay in ("base", "with-redis"):
        text, docs = rendered(overlay)
        f = renders / f"{overlay}.yaml"
        f.write_text(text)
        v = sh(f"kubernetes-validate -k 1.30.0 --strict --quiet {f}", check=False)
        assert v.returncode == 0, v.stdout + v.stderr
        kinds = {k.split("/")[0] for k in docs}
        assert {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} <= kinds, kinds

        dep = docs["Deployment/meridian"]
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        spec = pod["spec"]
        c = spec["containers"][0]
        assert dep["spec"]["replicas"] >= 2
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        zone = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert zone["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        assert spec["terminationGracePeriodSeconds"] >= c["lifecycle"]["preStop"]["sleep"]["seconds"] + 30
        assert c["securityContext"]["readOnlyRootFilesystem"] and spec["securityContext"]["runAsNonRoot"]
        # The image is the version scripts/image tags.
        version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.split()[1]
        assert c["image"] == f"localhost/meridian:{version}"
        # Every selector finds the pods; ports are the container's.
        port_names = {p["name"] for p in c["ports"]}
        svc = docs["Service/meridian"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
        assert docs["PodDisruptionBudget/meridian"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert docs["HorizontalPodAutoscaler/meridian"]["spec"]["scaleTargetRef"]["name"] == "meridian"
        assert docs["HorizontalPodAutoscaler/meridian"]["spec"]["minReplicas"] >= 2
        sm = docs["ServiceMonitor/meridian"]["spec"]
        assert sm["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert sm["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
        assert sm["endpoints"][0]["path"] == "/metrics"
        np_ = docs["NetworkPolicy/meridian"]["spec"]
        assert np_["podSelector"]["matchLabels"].items() <= labels.items()
        # The ConfigMap the pod mounts holds a config Meridian accepts.
        cm_name = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "config")
        cm = docs[f"ConfigMap/{cm_name}"]
        env = {e["name"]: e for e in c["env"]}
        assert env["MERIDIAN_CONFIG"]["value"] == "/etc/meridian/" + next(iter(cm["data"]))
        toml = tmp_path / f"{overlay}-meridian.toml"
        toml.write_text(next(iter(cm["data"].values())))
        sh(f"meridian config check {toml}")
        assert tomllib.loads(toml.read_text())["upstream"]["mode"] == "aws", "production never simulates"
        # The Redis URL comes from the Secret the config's url_env names.
        assert 'url_env = "MERIDIAN_REDIS_URL"' in toml.read_text()
        secret_ref = env["MERIDIAN_REDIS_URL"]["valueFrom"]["secretKeyRef"]
        sa = docs[f"ServiceAccount/{spec['serviceAccountName']}"]
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
        if overlay == "with-redis":
            secret = docs[f"Secret/{secret_ref['name']}"]
            import base64
            assert base64.b64decode(secret["data"][secret_ref["key"]]).decode() == "redis://meridian-redis:6379/0"
            assert docs["Service/meridian-redis"]["spec"]["selector"].items() <= \
                docs["Deployment/meridian-redis"]["spec"]["template"]["metadata"]["labels"].items()
        else:
            assert secret_ref["name"] == "meridian-redis" and not any(k.startswith("Secret/") for k in docs)

    # The schemas catch a misspelt field (so the check above can fail).
    broken = tmp_path / "broken.yaml"
    broken.write_text((renders / "base.yaml").read_text().replace("readinessProbe:", "readinesProbe:"))
    v = sh(f"kubernetes-validate -k 1.30.0 --strict --quiet {broken}", check=False)
    assert v.returncode != 0 and "readinesProbe" in v.stdout + v.stderr

    r = sh(f"checkov -d {renders} --framework kubernetes --skip-download --compact --quiet", check=False)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "Failed checks: 0" in r.stdout and "Passed checks:" in r.stdout, r.stdout[-2000:]


def test_the_kubernetes_iam_command_prints_the_policy_for_the_base_config():
    (command, _), = [c for c in readme_block("## Deploy on Kubernetes or ECS", 0) if c[0].startswith("meridian iam-policy")]
    doc = json.loads(sh(command).stdout)
    resources = [r for s in doc["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    # EU residency: every Bedrock ARN is in an EU region.
    bedrock = [r for r in resources if r.startswith("arn:aws:bedrock:")]
    assert bedrock and all(r.split(":")[3].startswith("eu-") or r.split(":")[3] == "" for r in bedrock), bedrock


# --- ECS / CloudFormation --------------------------------------------------

def template():
    """deploy/aws/meridian.yaml as cfn-lint reads it (intrinsic tags as Fn:: objects)."""
    code = ("import json,sys; from cfnlint.decode import cfn_yaml; "
            "print(json.dumps(cfn_yaml.load(sys.argv[1]), default=str))")
    out = subprocess.run([str(DEPLOY_BIN / "python"), "-c", code, str(ROOT / "deploy/aws/meridian.yaml")],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_the_ecs_commands_pass_and_the_template_carries_the_generated_policy_and_config(tmp_path):
    outputs = {}
    for command, needs in readme_block("## Deploy on Kubernetes or ECS", 1):
        if needs is None and not command.startswith("checkov"):  # checkov: its own test below
            outputs[command.split()[0] + " " + command.split()[1]] = sh(command).stdout
    t = template()
    res = t["Resources"]

    generated = json.loads(outputs["meridian iam-policy"])
    policies = res["TaskRole"]["Properties"]["Policies"]
    assert policies[0] == generated, "TaskRole's first policy is not what `meridian iam-policy` generates now"
    # One region throughout: the config's, the README's --region, the policy's name, the stack rule's.
    region = re.search(r'^region = "([a-z0-9-]+)"', (ROOT / "deploy/aws/meridian.toml").read_text(), re.M).group(1)
    assert generated["PolicyName"] == f"meridian-bedrock-{region}"
    # The only Bedrock permissions are the generated ones.
    others = json.dumps(policies[1:])
    assert "bedrock:" not in others
    # The template refuses any region but the one the policy was made for.
    assertion = t["Rules"]["PolicyRegionMatches"]["Assertions"][0]["Assert"]["Fn::Equals"]
    assert assertion == [{"Ref": "AWS::Region"}, region]

    # The task's config is deploy/aws/meridian.toml plus the stack's bucket.
    container = res["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    text = env["MERIDIAN_CONFIG_TOML"]["Fn::Sub"]
    file_text = (ROOT / "deploy/aws/meridian.toml").read_text()
    # A task whose role fails to resolve refuses to start; it never serves the simulator.
    assert tomllib.loads(file_text)["upstream"]["mode"] == "aws"
    assert text.startswith(file_text) and '[logging.s3]\nbucket = "${LogBucket}"' in text
    cfg = tmp_path / "task.toml"
    cfg.write_text(text.replace("${LogBucket}", "meridian-logs-example").replace("${AWS::Region}", region))
    sh(f"meridian config check {cfg}")
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    assert secrets["MERIDIAN_REDIS_URL"] == {"Ref": "RedisUrl"}
    assert 'url_env = "MERIDIAN_REDIS_URL"' in file_text
    # Drain on SIGTERM outlasts nothing the load balancer waits for.
    tg = {a["Key"]: a["Value"] for a in res["TargetGroup"]["Properties"]["TargetGroupAttributes"]}
    assert int(env["MERIDIAN_DRAIN_DELAY_S"]) <= int(tg["deregistration_delay.timeout_seconds"])
    assert res["TargetGroup"]["Properties"]["HealthCheckPath"] == "/ready"
    assert container["StopTimeout"] >= int(env["MERIDIAN_DRAIN_DELAY_S"]) + 30
    assert res["Cache"]["Properties"]["Engine"] == "valkey"
    assert res["LoadBalancer"]["Properties"]["Scheme"] == "internal"

    # cfn-lint fails on what it finds (so the README's line above can fail).
    broken = tmp_path / "broken.yaml"
    broken.write_text((ROOT / "deploy/aws/meridian.yaml").read_text().replace("LaunchType: FARGATE", "LaunchType: FARGATTE"))
    assert sh(f"cfn-lint {broken}", check=False).returncode != 0


def duration_s(text):
    n, unit = int(text[:-1]), text[-1]
    return n * {"s": 1, "m": 60, "h": 3600}[unit]


# Rules CloudWatch cannot state as Prometheus does (no label joins in alarms):
# the alarm asks a fleet-wide question and says so in its description.
APPROXIMATED = {"MeridianSecondaryRegionServesMost": "fleet-wide", "MeridianResidencyViolation": "fleet-wide"}


def test_every_prometheus_alert_has_a_cloudwatch_alarm_with_its_threshold_window_and_metrics(zero_config_gateway):
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    alarms = {}
    for name, r in template()["Resources"].items():
        if r["Type"] == "AWS::CloudWatch::Alarm":
            alarm_name = r["Properties"]["AlarmName"]["Fn::Sub"]
            alarms[alarm_name.removeprefix("${AWS::StackName}-")] = r["Properties"]
    assert set(alarms) == {r["alert"] for r in rules}
    exported = {line.split()[2] for line in urllib.request.urlopen(zero_config_gateway["url"] + "/metrics", timeout=5)
                .read().decode().splitlines() if line.startswith("# HELP ")}
    for rule in rules:
        a = alarms[rule["alert"]]
        expr = " ".join(rule["expr"].split())
        if "Metrics" in a:
            stats = [m["MetricStat"] for m in a["Metrics"] if "MetricStat" in m]
            metrics = {s["Metric"]["MetricName"] for s in stats}
            period = {s["Period"] for s in stats}
            assert len(period) == 1
            period = period.pop()
        else:
            metrics, period = {a["MetricName"]}, a["Period"]
        assert period * a["EvaluationPeriods"] == duration_s(rule["for"]), rule["alert"]
        assert metrics <= exported, metrics - exported
        if rule["alert"] in APPROXIMATED:
            assert APPROXIMATED[rule["alert"]] in a["AlarmDescription"]
            assert any(m in expr for m in metrics), (rule["alert"], metrics)
        else:
            for m in metrics:
                assert m in expr, (rule["alert"], m)
        # The rule's thresholds (numbers it compares against, products
        # worked out): the alarm's threshold is one, or its expression
        # compares against one.
        thresholds = [prod(float(f) for f in t.split("*"))
                      for t in re.findall(r"(?:>|==|<) ([0-9.]+(?: \* [0-9.]+)*)", expr)]
        expression = next((m["Expression"] for m in a.get("Metrics", []) if "Expression" in m), "")
        assert a["Threshold"] in thresholds or any(f"> {t:g}" in expression for t in thresholds), \
            (rule["alert"], a["Threshold"], thresholds, expression)


def test_checkov_passes_the_template(tmp_path):
    (command, _), = [c for c in readme_block("## Deploy on Kubernetes or ECS", 1) if c[0].startswith("checkov")]
    r = sh(command)
    assert "Failed checks: 0" in r.stdout and "Passed checks:" in r.stdout, r.stdout[-2000:]
    # A public, unencrypted bucket is caught (so the check above can fail).
    bad = tmp_path / "bad.yaml"
    bad.write_text("AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  B:\n    Type: AWS::S3::Bucket\n"
                   "    Properties:\n      AccessControl: PublicRead\n")
    r = sh(f"checkov -f {bad} --framework cloudformation --skip-download --compact --quiet", check=False)
    assert r.returncode != 0 and "Failed checks:" in r.stdout
