"""Claude Code (npm @anthropic-ai/claude-code, print mode, no tools) completes a
prompt through Meridian in gateway mode (ANTHROPIC_BASE_URL, /v1/messages) and in
Bedrock mode (ANTHROPIC_BEDROCK_BASE_URL, InvokeModel); with
ANTHROPIC_CUSTOM_HEADERS carrying x-meridian-residency: eu, the fleet's records
show nothing processed outside the EU."""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, fleet_gateway, sim_records

CLAUDE = os.environ.get(
    "CLAUDE_CODE_BIN", str(ROOT / ".claude-code" / "node_modules" / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"))


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    assert Path(CLAUDE).exists(), "scripts/test installs Claude Code with npm"
    yield from fleet_gateway(sim, tmp_path_factory.mktemp("cc"), """
[models.chat]
model = "claude-sonnet-4-5"
""")


def claude(gw, home, mode, headers=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "AWS_EC2_METADATA_DISABLED": "true"}
    if mode == "gateway":
        env.update(ANTHROPIC_BASE_URL=gw["url"], ANTHROPIC_API_KEY="unused-without-auth")
    else:
        env.update(CLAUDE_CODE_USE_BEDROCK="1", ANTHROPIC_BEDROCK_BASE_URL=gw["url"], AWS_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID="AKIDCLAUDECODE", AWS_SECRET_ACCESS_KEY="not-checked-without-auth")
    if headers:
        env["ANTHROPIC_CUSTOM_HEADERS"] = headers
    r = subprocess.run([CLAUDE, "-p", "say hello", "--model", "claude-sonnet-4-5", "--tools", ""],
                       env=env, cwd=home, capture_output=True, text=True, timeout=120)
    return r


@pytest.mark.parametrize("mode", ["gateway", "bedrock"])
def test_claude_code_completes_a_prompt(gw, mode, tmp_path):
    r = claude(gw, tmp_path, mode)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Simulated reply from" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("mode", ["gateway", "bedrock"])
def test_claude_code_with_an_eu_residency_header(sim, gw, mode, tmp_path):
    seen = len(sim_records(sim))
    r = claude(gw, tmp_path, mode, headers="x-meridian-residency: eu")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Simulated reply from eu-" in r.stdout, r.stdout
    where = {x.get("inference_region") or x["endpoint_region"] for x in sim_records(sim)[seen:]}
    assert where and all(w.startswith("eu-") for w in where), where
