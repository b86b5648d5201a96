"""Fail closed (issue 25): a reload that would lower the security posture is
refused and the running config keeps authenticating; the findings of the
adversarial pass, each reproduced against `meridian serve`."""
import json
import time
import urllib.error
import urllib.request

from conftest import key_hash, start_fleet_gateway, wait_for

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
