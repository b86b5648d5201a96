"""OpenAI's Codex CLI (npm @openai/codex, the latest release; its version is
in the report header) through zero-config `meridian serve`: `codex exec`
with a custom model provider pointing at Meridian's Responses API (Codex's
defaults otherwise: streaming, `store: false`, reasoning items included, its
own function tools, a namespace of agent tools and a built-in web search
that Bedrock does not run). The task needs one function call: the model
(through Meridian) asks for `exec_command`, Codex runs it, and the result
goes back to the model on the next request."""
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, Proc, clean_env, free_port, wait_http

CODEX = os.environ.get("CODEX_BIN", str(ROOT / ".codex-cli" / "node_modules" / ".bin" / "codex"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """Zero-config `meridian serve` (no file, no credentials: the in-process fleet)."""
    assert Path(CODEX).exists(), "scripts/test installs Codex CLI with npm"
    d = tmp_path_factory.mktemp("codex-gw")
    port = free_port()
    proc = Proc(["serve", "--listen", f"127.0.0.1:{port}"], clean_env(d), d, d / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc)
        yield {"url": url, "proc": proc, "dir": d}
    finally:
        proc.stop()


def codex(gw, work, model, prompt):
    """`codex exec --json` in `work` with Meridian as its model provider;
    its JSONL events."""
    home = work / ".codex-home"
    home.mkdir(exist_ok=True)
    provider = (f'model_providers.meridian={{name="Meridian",base_url="{gw["url"]}/v1",'
                'env_key="MERIDIAN_API_KEY",wire_api="responses"}')
    env = clean_env(work, CODEX_HOME=str(home), MERIDIAN_API_KEY="unused-with-zero-config")
    out = subprocess.run(
        [CODEX, "exec", "--json", "--skip-git-repo-check", "-c", "model_provider=meridian", "-c", provider,
         "-m", model, prompt],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert events, f"codex printed no events (exit {out.returncode}):\n{out.stderr[-3000:]}"
    return events


def version():
    return subprocess.run([CODEX, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()


def test_codex_exec_completes_a_task_with_one_function_call_on_claude(gw, tmp_path):
    print(f"Codex CLI: {version()}")
    (tmp_path / "marker.txt").write_text("marker-7f3a9\n")
    events = codex(gw, tmp_path, "claude-sonnet-4-5", "use exec_command to run `cat marker.txt`")
    done = [e["item"] for e in events if e["type"] == "item.completed"]
    ran = [i for i in done if i["type"] == "command_execution"]
    assert ran and "marker-7f3a9" in ran[0]["aggregated_output"], done
    assert ran[0]["exit_code"] == 0, ran
    said = [i["text"] for i in done if i["type"] == "agent_message"]
    # The last answer is the model's reply to the tool's result (the fleet
    # says so), so the result went back through Meridian.
    assert said and said[-1].startswith("Simulated reply from ") and "Tool result:" in said[-1], said
    assert not [e for e in events if e["type"] in ("turn.failed", "error")], events
    assert events[-1]["type"] == "turn.completed" and events[-1]["usage"]["input_tokens"] > 0, events[-1]
    # Both model requests were served through Meridian's Responses door,
    # and the built-in web search Codex offers was named as left out.
    log = (gw["dir"] / "serve.log").read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith('{"schemaType"')]
    ours = [r for r in records if r["meridian"]["requestedModel"] == "claude-sonnet-4-5"]
    assert len(ours) >= 2 and all(r["meridian"]["api"] == "openai" for r in ours), ours
    assert all(r["meridian"]["status"] == 200 for r in ours), ours
    req = urllib.request.Request(gw["url"] + "/v1/responses", method="POST",
                                 data=json.dumps({"model": "claude-sonnet-4-5", "input": "hi",
                                                  "tools": [{"type": "web_search"}]}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["x-meridian-dropped-tools"] == "web_search"


def test_codex_exec_completes_the_task_on_a_model_only_mantle_serves(gw, tmp_path):
    (tmp_path / "marker.txt").write_text("marker-mantle-5\n")
    events = codex(gw, tmp_path, "gpt-5.5", "use exec_command to run `cat marker.txt`")
    done = [e["item"] for e in events if e["type"] == "item.completed"]
    ran = [i for i in done if i["type"] == "command_execution"]
    assert ran and "marker-mantle-5" in ran[0]["aggregated_output"], done
    said = [i["text"] for i in done if i["type"] == "agent_message"]
    assert said and "Tool result:" in said[-1], said
    # Codex asks a reasoning model for reasoning: its items came back on
    # the next request (the fleet refuses a changed or missing signature).
    assert [i for i in done if i["type"] == "reasoning"], done
    assert events[-1]["type"] == "turn.completed", events[-1]
    log = (gw["dir"] / "serve.log").read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith('{"schemaType"')]
    ours = [r for r in records if r["meridian"]["requestedModel"] == "gpt-5.5"]
    assert len(ours) >= 2, ours
    assert all(r["meridian"]["surface"] == "mantle-openai" and r["modelId"] == "openai.gpt-5.5" for r in ours), ours
