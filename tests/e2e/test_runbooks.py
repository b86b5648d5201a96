"""Every command in docs/runbooks/ works as written: the curl | jq lines run
against a live gateway (admin key, a tenant, traffic) and must print
something, the `meridian` lines run against a config like an operator's, and
the ones that take minutes or need AWS (drills, catalog diff) are checked to
be spelled as the commands their own tests run."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT, Proc, clean_env, free_port, key_hash, wait_http

RUNBOOKS = sorted((ROOT / "docs" / "runbooks").glob("*.md"))
ADMIN_KEY = "mk-e2e-runbooks-admin-00000000000000001"
TENANT_KEY = "mk-e2e-runbooks-search-0000000000000001"

# Commands a test elsewhere runs, by how they start: the runbook line must be
# spelled so that one of these parses it.
COVERED_ELSEWHERE = {
    "meridian drill ": "crates/meridian/tests/drill.rs runs every scenario",
    "meridian catalog diff": "tests/e2e/test_catalog_refresh.py runs it against the fleet",
}


def runbook_lines():
    out = []
    for path in RUNBOOKS:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            for line in block.splitlines():
                command = re.split(r"\s+#", line, maxsplit=1)[0].strip()
                if command and not command.startswith("#"):
                    out.append((path.name, command))
    return out


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    d = tmp_path_factory.mktemp("runbooks")
    (d / "meridian.toml").write_text(f"""
region = "us-east-1"
default_residency = ["us", "eu"]

[upstream]
mode = "simulated"

[models.chat]
model = "claude-sonnet-4-5"

[admin]
key_hash = "{key_hash(ADMIN_KEY)}"

[tenants.search]
api_keys = ["{key_hash(TENANT_KEY)}"]

[logging]
sink = "file"
file = "invocations.ndjson"
""")
    port = free_port()
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(d), d, d / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc)
        yield {"url": url, "dir": d, "proc": proc}
    finally:
        proc.stop()


def test_the_runbooks_have_commands_and_name_what_starts_them():
    assert len(RUNBOOKS) >= 7
    for path in RUNBOOKS:
        if path.name == "README.md":
            continue
        text = path.read_text()
        assert "**Starts from:**" in text and "## Verify" in text, path.name
        assert re.search(r"```sh\n", text), f"{path.name} has no commands"


def test_every_runbook_command_runs(gateway):
    # Traffic first, so candidates, usage and metrics have something to show.
    from openai import OpenAI
    OpenAI(base_url=gateway["url"] + "/v1", api_key=TENANT_KEY, max_retries=0).chat.completions.create(
        model="chat", max_tokens=8, messages=[{"role": "user", "content": "runbook"}])

    env = clean_env(gateway["dir"], GW=gateway["url"], ADMIN=ADMIN_KEY,
                    PATH=f"{Path(BIN).parent}:/usr/bin:/bin")
    issued = None
    ran = 0
    for name, command in runbook_lines():
        covered = [why for start, why in COVERED_ELSEWHERE.items() if command.startswith(start)]
        if covered:
            check_spelling(command)
            continue
        line = (command.replace("MODEL", "claude-sonnet-4-5").replace("REGION", "us-east-1")
                .replace("--config meridian.toml", "--config " + str(gateway["dir"] / "meridian.toml")))
        if "key_XXXXXXXXXXXX" in line:
            assert issued, f"{name}: revokes a key before issuing one"
            line = line.replace("key_XXXXXXXXXXXX", issued)
        r = subprocess.run(["bash", "-o", "pipefail", "-c", line], env=env, cwd=gateway["dir"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{name}: {line}\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        if "-X DELETE" not in line:
            # jq prints null for a path that is not there: a runbook naming a
            # field /status does not have fails here.
            assert r.stdout.strip() and "null" not in r.stdout.split("\n"), f"{name}: {line} printed {r.stdout!r}"
        if "POST" in line and "/admin/keys" in line:
            issued = json.loads(r.stdout)["id"]
        ran += 1
    assert ran >= 19, ran


def check_spelling(command):
    """The drill and catalog-diff lines parse as the commands their tests run."""
    args = command.split()[1:]
    if args[0] == "drill":
        assert args[1] in {"region-outage", "brownout", "throttle-storm", "flapping", "residency-squeeze",
                           "provisioned-overflow"}, command
        help_text = subprocess.run([BIN, "drill", "--help"], capture_output=True, text=True).stdout
        for flag in [a for a in args if a.startswith("--")]:
            assert flag in help_text, (command, flag)
    else:
        help_text = subprocess.run([BIN, *args[:2], "--help"], capture_output=True, text=True)
        assert help_text.returncode == 0, command
