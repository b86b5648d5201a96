"""Claude Code (npm @anthropic-ai/claude-code, the latest release; its version
is in the report header) with its defaults, no model settings, through
zero-config `meridian serve` in its three modes: gateway
(ANTHROPIC_BASE_URL, /v1/messages), Bedrock (CLAUDE_CODE_USE_BEDROCK,
InvokeModel) and Mantle (CLAUDE_CODE_USE_MANTLE, /anthropic/v1/messages with
Mantle model IDs). The Anthropic-format modes are served on Bedrock's
native Messages endpoint. Each finishes a prompt on the model it asks for first,
completes an agentic round (a Bash call, its result back to the model), and
with `x-meridian-residency: eu` has every request processed in the EU per the
in-process fleet's own records."""
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, Proc, clean_env, free_port, wait_http

CLAUDE = os.environ.get(
    "CLAUDE_CODE_BIN", str(ROOT / ".claude-code" / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"))

# The model each mode asks for first with no model settings (Claude Code
# 2.1.332: Opus 5.5 under the mode's name for it).
FIRST_ASKED = {"gateway": "claude-opus-5-5", "bedrock": "us.anthropic.claude-opus-5-5",
               "mantle": "anthropic.claude-opus-5-5"}
MODES = list(FIRST_ASKED)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """Zero-config `meridian serve` (no file, no credentials: the in-process
    fleet), with the fleet's control API and its token from the log."""
    assert Path(CLAUDE).exists(), "scripts/test installs Claude Code with npm"
    d = tmp_path_factory.mktemp("cc")
    port = free_port()
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(d), d, d / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc)
        with urllib.request.urlopen(url + "/status", timeout=5) as r:
            detail = json.loads(r.read())["upstream"]["detail"]
        control = detail.split("control API ")[1].split()[0]
        token = re.search(r"token=(\w+)", proc.output()).group(1)
        yield {"url": url, "proc": proc, "control": control, "token": token}
    finally:
        proc.stop()


def fleet_records(gw):
    """The in-process fleet's records of model invocations."""
    req = urllib.request.Request(gw["control"] + "/records", headers={"authorization": f"Bearer {gw['token']}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return [x for x in json.loads(r.read()) if x["model_id"]]


def claude(gw, home, mode, prompt, *flags, headers=None):
    """Claude Code in print mode with its defaults; its JSON result."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "AWS_EC2_METADATA_DISABLED": "true"}
    if mode == "gateway":
        env.update(ANTHROPIC_BASE_URL=gw["url"], ANTHROPIC_API_KEY="unused-without-auth")
    elif mode == "bedrock":
        env.update(CLAUDE_CODE_USE_BEDROCK="1", ANTHROPIC_BEDROCK_BASE_URL=gw["url"], AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="AKIDCLAUDECODE", AWS_SECRET_ACCESS_KEY="not-checked-without-auth")
    else:
        # Bedrock's default Mantle base URL ends in /anthropic; Meridian serves it there.
        env.update(CLAUDE_CODE_USE_MANTLE="1", ANTHROPIC_BEDROCK_MANTLE_BASE_URL=gw["url"] + "/anthropic",
                   CLAUDE_CODE_SKIP_MANTLE_AUTH="1", AWS_REGION="us-east-1")
    if headers:
        env["ANTHROPIC_CUSTOM_HEADERS"] = headers
    r = subprocess.run([CLAUDE, "-p", prompt, "--output-format", "json", *flags],
                       env=env, cwd=home, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["is_error"] is False and out["subtype"] == "success", out
    return out


@pytest.mark.parametrize("mode", MODES)
def test_claude_code_with_its_defaults_answers_on_the_model_it_asks_for(gw, mode, tmp_path):
    seen = len(fleet_records(gw))
    out = claude(gw, tmp_path, mode, "say hello")
    assert "You said: say hello" in out["result"], out["result"]
    assert list(out["modelUsage"]) == [FIRST_ASKED[mode]], out["modelUsage"]
    served = {x["model_id"] for x in fleet_records(gw)[seen:]}
    # Every call went to Opus 5.5 (a profile of it), the model asked for: no
    # sub-agents fanning out, no fallback to an older model.
    assert served and all("claude-opus-5-5" in m or "haiku" in m or "sonnet" in m for m in served), served
    assert any("claude-opus-5-5" in m for m in served), served
    # Bedrock mode calls InvokeModel itself; the Anthropic-format modes are
    # served whole on Bedrock's native Messages endpoint (no translation).
    ops = {x["operation"] for x in fleet_records(gw)[seen:] if "claude-opus-5-5" in x["model_id"]}
    if mode == "bedrock":
        assert ops and ops <= {"InvokeModel", "InvokeModelWithResponseStream"}, ops
    else:
        assert ops == {"RuntimeMessages"}, ops


@pytest.mark.parametrize("mode", MODES)
def test_claude_code_completes_an_agentic_round(gw, mode, tmp_path):
    out = claude(gw, tmp_path, mode, "use Bash to run `echo meridian-round-trip`", "--allowedTools", "Bash")
    # The model called Bash, Claude Code ran it and sent the output back.
    assert out["num_turns"] == 2, out
    assert "Tool result: meridian-round-trip" in out["result"], out["result"]


@pytest.mark.parametrize("mode", MODES)
def test_claude_code_with_an_eu_residency_header_is_processed_in_the_eu(gw, mode, tmp_path):
    seen = len(fleet_records(gw))
    out = claude(gw, tmp_path, mode, "use Bash to run `echo in-the-eu`", "--allowedTools", "Bash",
                 headers="x-meridian-residency: eu")
    assert "Tool result: in-the-eu" in out["result"], out["result"]
    records = fleet_records(gw)[seen:]
    where = {x.get("inference_region") or x["endpoint_region"] for x in records}
    assert len(records) >= 2 and all(w.startswith("eu-") for w in where), where


def test_claude_code_with_a_model_that_is_not_claude(gw, tmp_path):
    """Gateway mode with `--model nova-pro`: Claude Code's Messages requests
    (system messages inside the conversation, thinking settings, tools) are
    translated to Converse for Nova; a tool round completes."""
    seen = len(fleet_records(gw))
    out = claude(gw, tmp_path, "gateway", "use Bash to run `echo nova-round`", "--allowedTools", "Bash",
                 "--model", "nova-pro")
    assert out["num_turns"] == 2, out
    assert "Tool result: nova-round" in out["result"], out["result"]
    ops = {(x["model_id"], x["operation"]) for x in fleet_records(gw)[seen:]}
    assert ops and all("nova-pro" in m and op.startswith("Converse") for m, op in ops), ops
