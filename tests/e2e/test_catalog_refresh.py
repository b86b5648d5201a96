"""The catalog refreshes itself from Bedrock's control plane (here the
simulated fleet's, whose world a test can change): a new profile becomes
callable; a profile whose destination set grows outside the EU leaves the EU
policy before any request is processed outside the EU; `meridian catalog
diff` and /status report both. With the control plane unreachable, Meridian
serves from the compiled catalog at once and says so."""
import json
import subprocess
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import APP_PROFILE, APP_PROFILES, BIN, clean_env, fleet_gateway, free_port, gw_client, key_hash, put_faults, sim_records, start_fleet_gateway, wait_for

EU_PROFILE = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
NEW_PROFILE = "eu.anthropic.claude-opus-4-7-v1"
ASK = [{"role": "user", "content": [{"text": "where am I processed"}]}]


def world(sim, method, path="/world", body=None):
    req = urllib.request.Request(sim["control_url"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def status(gw):
    with urllib.request.urlopen(gw["url"] + "/status", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def gw(sim, tmp_path_factory):
    world(sim, "DELETE")
    try:
        yield from fleet_gateway(sim, tmp_path_factory.mktemp("refresh"), f"""
[catalog]
refresh_interval_s = 1

[models.eu-chat]
model = "claude-sonnet-4-5"
residency = ["eu"]

[models.app]
model = "{APP_PROFILE}"
residency = ["us"]
{APP_PROFILES}""")
    finally:
        world(sim, "DELETE")


def test_refresh_adds_profiles_and_takes_a_widened_one_out_of_the_eu_policy(sim, gw):
    first = wait_for(lambda: status(gw)["catalog"]["refreshes"] >= 1 and status(gw), 15, "a first refresh")
    cat = first["catalog"]
    assert cat["source"].startswith("compiled, with Bedrock's ListInferenceProfiles")
    assert "eu-west-1" in cat["regions_read"] and "us-east-1" in cat["regions_read"]
    assert cat["contradictions"] == [] and cat["confirmed"] > 10, cat

    rt = gw_client(gw)
    with pytest.raises(ClientError):
        rt.converse(modelId=NEW_PROFILE, messages=ASK)  # not in the fleet's world yet

    # Load on the EU model throughout the change.
    results, stop = [], threading.Event()

    def load():
        c = gw_client(gw)
        while not stop.is_set():
            try:
                r = c.converse(modelId="eu-chat", messages=ASK, inferenceConfig={"maxTokens": 8})
                results.append(r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"])
            except ClientError as e:
                results.append(e.response["Error"]["Code"])
            time.sleep(0.02)

    mark = max((r["seq"] for r in sim_records(sim)), default=-1)
    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(1)
        compiled = next(tg["destinations"] for m in status(gw)["models"] if m["name"] == "eu-chat"
                        for tg in m["targets"] if tg["model_id"] == EU_PROFILE and tg["endpoint_region"] == "eu-west-1")
        # Published at once, routed by in 10 s (a refresh every second, each read
        # bounded by 3 s): Meridian must stop sending EU traffic there first.
        world(sim, "PUT", "/world/profiles", {"id": EU_PROFILE, "source": "eu-west-1",
                                              "destinations": sorted(set(compiled) | {"us-east-1"}),
                                              "effective_after_ms": 10000})
        world(sim, "PUT", "/world/profiles", {"id": NEW_PROFILE, "source": "eu-west-1",
                                              "destinations": ["eu-west-1", "eu-central-1"]})
        widened = wait_for(lambda: [c for c in status(gw)["catalog"]["contradictions"]
                                    if c["profile"] == EU_PROFILE and c["source"] == "eu-west-1"], 8, "the refresh to see it")
        assert widened[0]["verdict"] == "widened" and "us-east-1" in widened[0]["discovered"]
        time.sleep(11)  # past the moment the fleet starts routing by the wider set
    finally:
        stop.set()
        t.join(timeout=30)

    served = [r for r in results if r.startswith("eu-")]
    assert served, f"the EU model was served before the change: {results[:5]}"
    assert not [r for r in results if r.startswith("us-")], "never answered from outside the EU"
    processed = [r for r in sim_records(sim) if r["seq"] > mark and r["model_id"].startswith("eu.")]
    outside = [r for r in processed if not (r.get("inference_region") or r["endpoint_region"]).startswith("eu-")]
    assert processed and not outside, f"processed outside the EU per the fleet: {outside[:3]}"
    eu_chat = next(m for m in status(gw)["models"] if m["name"] == "eu-chat")
    assert not any(tg["model_id"] == EU_PROFILE and tg["endpoint_region"] == "eu-west-1"
                   for tg in eu_chat.get("targets", [])), json.dumps(eu_chat, indent=1)

    # The new profile is callable now, where the refresh says it processes.
    added = status(gw)["catalog"]["added"]
    assert any(a["profile"] == NEW_PROFILE for a in added), added
    r = rt.converse(modelId=NEW_PROFILE, messages=ASK, inferenceConfig={"maxTokens": 8})
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"] in ("eu-west-1", "eu-central-1")

    # `meridian catalog diff` says the same, and exits 1 for the contradiction.
    d = gw["dir"]
    out = subprocess.run([BIN, "catalog", "diff", "--json", "--config", str(d / "meridian.toml")],
                         env=clean_env(d, AWS_SHARED_CREDENTIALS_FILE=str(d / "credentials"),
                                       AWS_CONFIG_FILE=str(d / "config")),
                         cwd=d, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    findings = json.loads(out.stdout)["findings"]
    verdicts = {(f["profile"], f["source"]): f["verdict"] for f in findings}
    assert verdicts[(EU_PROFILE, "eu-west-1")] == "widened"
    assert verdicts[(NEW_PROFILE, "eu-west-1")] == "added"
    assert verdicts[(EU_PROFILE.replace("eu.", "us.", 1).replace("sonnet-4-5", "sonnet-4-5"), "us-east-1")] == "confirmed"

    # `meridian doctor` counts unconfirmed entries and says what a refresh reads now.
    doc = subprocess.run([BIN, "doctor", "--json", "--config", str(d / "meridian.toml")],
                         env=clean_env(d, AWS_SHARED_CREDENTIALS_FILE=str(d / "credentials"),
                                       AWS_CONFIG_FILE=str(d / "config")),
                         cwd=d, capture_output=True, text=True, timeout=60)
    catalog_checks = [c["message"] for c in json.loads(doc.stdout)["checks"] if c["area"] == "catalog"]
    assert any("marked unconfirmed" in m for m in catalog_checks), catalog_checks
    assert any(m.startswith("refresh from ListInferenceProfiles") and "1 added, 1 contradicted" in m
               for m in catalog_checks), catalog_checks

    metrics = urllib.request.urlopen(gw["url"] + "/metrics", timeout=5).read().decode()
    assert "meridian_catalog_contradictions 1" in metrics, [m for m in metrics.splitlines() if "catalog" in m]


def test_a_declared_application_profile_is_checked_with_get_inference_profile(sim, gw):
    rt = gw_client(gw)
    ok = rt.converse(modelId="app", messages=ASK, inferenceConfig={"maxTokens": 8})
    assert ok["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"].startswith("us-")
    # Bedrock says the profile also processes in eu-west-1 (not routed by during this test).
    world(sim, "PUT", "/world/profiles", {"id": APP_PROFILE, "source": "us-east-1",
                                          "destinations": ["eu-west-1", "us-east-1", "us-west-2"],
                                          "effective_after_ms": 600000})
    widened = wait_for(lambda: [c for c in status(gw)["catalog"]["contradictions"] if c["profile"] == APP_PROFILE],
                       10, "the app profile's contradiction")
    assert widened[0]["verdict"] == "widened" and widened[0]["compiled"] == ["us-east-1", "us-west-2"], widened
    # A US-only model may not use it any more: nothing else serves it, so it is refused, not sent.
    with pytest.raises(ClientError) as e:
        rt.converse(modelId="app", messages=ASK, inferenceConfig={"maxTokens": 8})
    assert "eu-west-1" in e.value.response["Error"]["Message"], e.value.response


def test_an_unreachable_control_plane_serves_from_the_compiled_catalog(sim, tmp_path_factory):
    d = tmp_path_factory.mktemp("noplane")
    closed = free_port()  # nothing listens here
    gw = start_fleet_gateway({**sim, "regions": {"us-east-1": {"url": f"http://127.0.0.1:{closed}"}}}, d, """
[catalog]
refresh_interval_s = 1

[models.chat]
model = "claude-sonnet-4-5"
""")
    try:
        s = status(gw)
        assert s["catalog"]["source"].startswith("compiled (no refresh"), s["catalog"]
        assert any(m["name"] == "chat" and m["targets"] for m in s["models"]), "resolved from the compiled catalog"
        errors = wait_for(lambda: status(gw)["catalog"]["errors"], 15, "the failed refresh to be reported")
        assert any(e.startswith("us-east-1:") for e in errors), errors
        assert status(gw)["catalog"]["refreshes"] == 0
    finally:
        gw["proc"].stop()


def test_a_model_released_today_is_servable_after_one_refresh_through_every_door(sim, gw):
    """The fleet starts serving a model the compiled catalog does not have
    (Bedrock lists it, profiles only); after a refresh it answers under its
    Anthropic name, its base (Mantle) ID and its profile IDs on the Bedrock,
    OpenAI and Anthropic doors, inside the residency policy, priced unknown."""
    import anthropic
    import openai

    new, name = "anthropic.claude-opus-6", "claude-opus-6"
    rt = gw_client(gw)
    with pytest.raises(ClientError):
        rt.converse(modelId=name, messages=ASK)
    regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1"]
    world(sim, "PUT", "/world/models", {"id": new, "name": "Claude Opus 6", "provider": "Anthropic",
                                        "regions": regions})
    us = ["us-east-1", "us-east-2", "us-west-2"]
    for src in us:
        world(sim, "PUT", "/world/profiles", {"id": f"us.{new}", "source": src, "destinations": us})
    world(sim, "PUT", "/world/profiles", {"id": f"eu.{new}", "source": "eu-west-1", "destinations": ["eu-west-1"]})

    def served():
        try:
            return rt.converse(modelId=name, messages=ASK, inferenceConfig={"maxTokens": 8})
        except ClientError:
            return None
    r = wait_for(served, 15, "a refresh to make the new model callable")
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-meridian-region"] in us
    rid = r["ResponseMetadata"]["RequestId"]
    record = wait_for(lambda: next((json.loads(line) for line in gw["proc"].output().splitlines()
                                    if line.startswith('{"schemaType"') and rid in line), None),
                      10, "its invocation record on stdout")
    assert record["modelId"] == f"us.{new}"
    assert record["meridian"].get("estimatedCostUsd") is None, "an unknown price is not zero"
    assert record["meridian"].get("priceKnown") is False, record["meridian"]

    # Every name, every door.
    for model_id in (new, f"us.{new}"):
        r = rt.converse(modelId=model_id, messages=ASK, inferenceConfig={"maxTokens": 8})
        assert r["output"]["message"]["content"][0]["text"].startswith("Simulated reply from us-")
    stream = rt.converse_stream(modelId=name, messages=ASK, inferenceConfig={"maxTokens": 8})["stream"]
    assert any("metadata" in e for e in stream)
    oa = openai.OpenAI(base_url=gw["url"] + "/v1", api_key="unused", max_retries=0)
    chat = oa.chat.completions.create(model=name, messages=[{"role": "user", "content": "new model"}])
    assert "You said: new model" in chat.choices[0].message.content
    # This gateway exposes its [models] only (a zero-config one lists every catalog model, found ones too).
    assert name not in {m.id for m in oa.models.list()}
    an = anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0)
    for model_id in (name, new):
        raw = an.messages.with_raw_response.create(model=model_id, max_tokens=50,
                                                   messages=[{"role": "user", "content": "hi opus 6"}])
        assert "You said: hi opus 6" in raw.parse().content[-1].text
        # A Claude model found today is on Bedrock's native Messages endpoint too.
        assert raw.headers["x-meridian-surface"] == "runtime-messages", dict(raw.headers)
    # Its residency comes from its profiles' destination sets, as for any model.
    mark = max((x["seq"] for x in sim_records(sim)), default=-1)
    eu = anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0,
                             default_headers={"x-meridian-residency": "eu"})
    m = eu.messages.create(model=name, max_tokens=50, messages=[{"role": "user", "content": "in the eu"}])
    assert "Simulated reply from eu-west-1" in m.content[-1].text
    later = [x for x in sim_records(sim) if x["seq"] > mark]
    assert later and all((x.get("inference_region") or x["endpoint_region"]) == "eu-west-1" for x in later), later

    # A tenant with a budget is not served a model whose price is unknown
    # unless it admits unpriced models; one that does is served, flagged.
    capped_key, open_key = "mk-capped-0123456789abcdef", "mk-open-0123456789abcdef"
    admin_key = "mk-admin-0123456789abcdef"
    d = gw["dir"].parent / "unpriced"
    d.mkdir(exist_ok=True)
    tenants = start_fleet_gateway(sim, d, f"""
[catalog]
refresh_interval_s = 1

[tenants.capped]
api_keys = ["{key_hash(capped_key)}"]
budget_usd_per_day = 5.0

[tenants.open]
api_keys = ["{key_hash(open_key)}"]
budget_usd_per_day = 5.0
unpriced = "admit"

[admin]
key_hash = "{key_hash(admin_key)}"
""")
    try:
        capped = anthropic.Anthropic(base_url=tenants["url"], api_key=capped_key, max_retries=0)
        ask = {"max_tokens": 20, "messages": [{"role": "user", "content": "budget"}]}

        def refused():
            try:
                capped.messages.create(model=name, **ask)
            except anthropic.BadRequestError as e:
                return "not known" in str(e) and str(e)
            except anthropic.NotFoundError:
                return None
            raise AssertionError("served a model its budget cannot account for")
        message = wait_for(refused, 15, "a refresh, then the budget's refusal")
        assert "unpriced" in message and "capped" in message, message
        # A priced model is served as before.
        assert capped.messages.create(model="claude-opus-5-5", **ask).content
        served = anthropic.Anthropic(base_url=tenants["url"], api_key=open_key, max_retries=0).messages \
            .with_raw_response.create(model=name, **ask)
        rid = served.headers["x-amzn-requestid"]
        record = wait_for(lambda: next((json.loads(line) for line in tenants["proc"].output().splitlines()
                                        if line.startswith('{"schemaType"') and rid in line), None),
                          10, "its invocation record")
        assert record["meridian"]["priceKnown"] is False and "estimatedCostUsd" not in record["meridian"]
        with urllib.request.urlopen(tenants["url"] + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'meridian_unpriced_requests_total{model="claude-opus-6"}' in metrics, \
            [m for m in metrics.splitlines() if "unpriced" in m]
        # /admin/usage says how many of a tenant's requests had no known price.
        req = urllib.request.Request(tenants["url"] + "/admin/usage", headers={"authorization": f"Bearer {admin_key}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            usage = {t["name"]: t for t in json.loads(r.read())["tenants"]}
        assert usage["open"]["day"]["unpriced_requests"] == 1, usage["open"]
        assert usage["capped"]["day"]["unpriced_requests"] == 0, usage["capped"]
        # A gateway without [models] lists the catalog's models in /v1/models, found ones too.
        listed = {m.id for m in openai.OpenAI(base_url=tenants["url"] + "/v1", api_key=open_key,
                                              max_retries=0).models.list()}
        assert name in listed and "claude-opus-5-5" in listed, sorted(listed)
    finally:
        tenants["proc"].stop()


def test_mantle_is_called_only_where_its_model_list_names_the_model(sim, gw):
    """The refresh reads each region's Mantle model list: with runtime
    Messages down in us-east-1 and us-east-2, an Anthropic request for a model
    Mantle serves only in us-east-2 skips Mantle in us-east-1 and is served
    by Mantle in us-east-2, inside the US policy."""
    import anthropic

    new, name = "anthropic.claude-opus-7", "claude-opus-7"
    us = ["us-east-1", "us-east-2", "us-west-2"]
    world(sim, "PUT", "/world/models", {"id": new, "name": "Claude Opus 7", "provider": "Anthropic",
                                        "regions": us, "mantle": ["us-east-2"]})
    for src in us:
        world(sim, "PUT", "/world/profiles", {"id": f"us.{new}", "source": src, "destinations": us})
    an = anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0,
                             default_headers={"x-meridian-residency": "us"})
    ask = {"max_tokens": 20, "messages": [{"role": "user", "content": "mantle list"}]}

    def served():
        try:
            return an.messages.with_raw_response.create(model=name, **ask)
        except (anthropic.NotFoundError, anthropic.BadRequestError):
            return None
    wait_for(served, 15, "a refresh to make the new model callable")
    try:
        for region in ("us-east-1", "us-east-2"):
            put_faults(sim, region, {"surfaces_down": ["runtime-messages"]})
        mark = max((x["seq"] for x in sim_records(sim)), default=-1)
        raw = an.messages.with_raw_response.create(model=name, **ask)
        assert "You said: mantle list" in raw.parse().content[-1].text
        assert raw.headers["x-meridian-surface"] == "mantle-messages", dict(raw.headers)
        assert raw.headers["x-meridian-region"] == "us-east-2", dict(raw.headers)
        mantle_calls = [(x["endpoint_region"], x["outcome"]) for x in sim_records(sim)
                        if x["seq"] > mark and x["operation"] == "MantleMessages"]
        assert mantle_calls == [("us-east-2", "success")], mantle_calls
    finally:
        for region in ("us-east-1", "us-east-2"):
            put_faults(sim, region, {})


def test_a_model_only_mantle_serves_and_a_policy_only_mantle_fits(sim, gw):
    """A model Mantle lists that Bedrock Runtime does not (as Claude Mythos
    preview was) is served on Mantle, nearest region the policy admits first;
    and a policy narrower than every profile of a model (one region) is
    served by Mantle in that region rather than refused."""
    import anthropic

    new = "anthropic.claude-mantle-only-1"
    world(sim, "PUT", "/world/models", {"id": new, "name": "Claude Mantle Only", "provider": "Anthropic",
                                        "regions": [], "mantle": ["us-east-2", "eu-west-1"]})
    ask = {"max_tokens": 20, "messages": [{"role": "user", "content": "mantle only"}]}

    def client(residency=None):
        headers = {"x-meridian-residency": residency} if residency else {}
        return anthropic.Anthropic(base_url=gw["url"], api_key="unused", max_retries=0, default_headers=headers)

    def served():
        try:
            return client().messages.with_raw_response.create(model=new, **ask)
        except (anthropic.NotFoundError, anthropic.BadRequestError):
            return None
    raw = wait_for(served, 15, "a refresh to read Mantle's lists")
    assert "You said: mantle only" in raw.parse().content[-1].text
    assert raw.headers["x-meridian-surface"] == "mantle-messages", dict(raw.headers)
    assert raw.headers["x-meridian-region"] == "us-east-2", dict(raw.headers)
    # Under its Anthropic name too, and inside an EU policy in the EU.
    raw = client("eu").messages.with_raw_response.create(model="claude-mantle-only-1", **ask)
    assert raw.headers["x-meridian-region"] == "eu-west-1", dict(raw.headers)

    # Opus 4.7's profiles all reach beyond us-east-1; Mantle there does not.
    mark = max((x["seq"] for x in sim_records(sim)), default=-1)
    raw = client("us-east-1").messages.with_raw_response.create(model="claude-opus-4-7", **ask)
    assert raw.headers["x-meridian-surface"] == "mantle-messages", dict(raw.headers)
    later = [x for x in sim_records(sim) if x["seq"] > mark]
    assert later and all((x.get("inference_region") or x["endpoint_region"]) == "us-east-1" for x in later), later
    # No Mantle list names a model in a region outside the policy: refused, not served elsewhere.
    with pytest.raises(anthropic.APIStatusError):
        client("us-west-1").messages.create(model=new, **ask)
