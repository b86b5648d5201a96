"""The live dashboard at /ui in a real headless Chromium (Debian's chromium
and chromium-driver, selenium from PyPI): behind the admin key, it shows a
region's breaker open and its traffic share fall to zero within 5 s of the
region going down in the fleet while the next region's share rises; its
figures match /status and /metrics; the residency view lists only allowed
regions; a decision record opens from the live tail; a drill started from
the page shows its report. Screenshots of each view are saved under
target/screenshots/."""
import json
import re
import threading
import time
import tomllib
import urllib.error
import urllib.request

import boto3
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import NO_RETRY, ROOT, headless_chromium, key_hash, run_sim, sim_control, start_fleet_gateway

ADMIN_KEY = "mk-e2e-dashboard-admin-0000000000001"
WEB = ("AKIDWEBTENANT", "web-tenant-secret")
SHOTS = ROOT / "target" / "screenshots"


CONFIG = f"""
default_residency = ["us"]

[models.chat]
model = "claude-sonnet-4-5"

[routing]
hedging = false

[admin]
key_hash = "{key_hash(ADMIN_KEY)}"

[tenants.web]
credentials = [{{ access_key_id = "{WEB[0]}", secret_access_key = "{WEB[1]}" }}]
requests_per_minute = 100000
budget_usd_per_day = 50
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    yield from run_sim(tmp_path_factory.mktemp("dsim"), "us-east-1,us-east-2,us-west-2", 3)


@pytest.fixture(scope="module")
def gw(fleet, tmp_path_factory):
    g = start_fleet_gateway(fleet, tmp_path_factory.mktemp("dash"), CONFIG)
    yield g
    g["proc"].stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"), "--window-size=1280,1000")
    try:
        yield driver
    finally:
        driver.quit()


class Traffic:
    """boto3 Converse calls as the `web` tenant, about 20 a second, until stopped."""

    def __init__(self, gw):
        self.client = boto3.client("bedrock-runtime", endpoint_url=gw["url"], region_name="us-east-1",
                                   aws_access_key_id=WEB[0], aws_secret_access_key=WEB[1], config=NO_RETRY)
        self.stop_at = None
        self.sent = 0
        self.failed = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.running = True
        self.t.start()

    def run(self):
        while self.running:
            try:
                self.client.converse(modelId="chat", messages=[{"role": "user", "content": [{"text": "hello"}]}],
                                     inferenceConfig={"maxTokens": 16})
            except Exception:
                self.failed += 1
            self.sent += 1
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.t.join(timeout=30)


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait(browser, seconds, poll=0.2):
    """A wait that retries when the page re-rendered what it was reading."""
    return WebDriverWait(browser, seconds, poll_frequency=poll,
                         ignored_exceptions=(StaleElementReferenceException,))


def cell(browser, region, field, model="chat"):
    # Read in one script: the page re-renders every second.
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        f'article[data-region="{region}"] [data-model="{model}"] [data-field="{field}"]')


def share(browser, region):
    v = cell(browser, region, "share")
    return None if v is None else int(v.rstrip("%"))


def view(browser, name):
    browser.find_element(By.CSS_SELECTOR, f'.tab[data-view="{name}"]').click()
    wait(browser, 5).until(lambda b: b.find_element(By.ID, name).is_displayed())


def shot(browser, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"dashboard-{name}.png"))


def test_the_dashboard_follows_an_outage_and_agrees_with_status_and_metrics(gw, fleet, browser):
    # Without the admin key the data is refused; the page asks for it.
    with pytest.raises(urllib.error.HTTPError) as e:
        get_json(gw["url"] + "/ui/api/snapshot")
    assert e.value.code == 401
    browser.get(gw["url"] + "/ui")
    key = wait(browser, 10).until(lambda b: b.find_element(By.ID, "key") if b.find_element(
        By.ID, "login").is_displayed() else None)
    key.send_keys(ADMIN_KEY)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()

    traffic = Traffic(gw)
    try:
        # The region serving everything now.
        first = wait(browser, 15).until(lambda b: next(
            (r for r in ("us-east-1", "us-east-2", "us-west-2") if (share(b, r) or 0) >= 90), None))
        shot(browser, "regions")
        # The busiest region's card comes first; no two map labels overlap.
        assert browser.execute_script(
            "return document.querySelector('#region-cards article').dataset.region") == first
        assert overlapping_labels(browser) == []
        # The surface that answered: boto3's Converse calls go to bedrock-runtime.
        assert cell(browser, first, "surface") == "Converse/Invoke"
        # Percentiles come from the latencies, not from histogram bounds.
        wait(browser, 5).until(lambda b: cell(b, first, "p50") not in (None, "–")
                               and cell(b, first, "p50") != cell(b, first, "p99"))
        sim_control(fleet, "PUT", f"/regions/{first}/faults", {"outage": True})
        t0 = time.time()
        try:
            def moved(b):
                others = [r for r in ("us-east-1", "us-east-2", "us-west-2") if r != first]
                return (cell(b, first, "breaker") == "open" and share(b, first) == 0
                        and any((share(b, r) or 0) > 0 for r in others))
            wait(browser, 5).until(moved)
            took = time.time() - t0
            assert took <= 5.0, took
            # Under the region-outage drill's fault, with traffic rerouted:
            # the busiest region (now another one) comes first, and still no
            # two map labels overlap.
            busiest = wait(browser, 5).until(lambda b: (r := b.execute_script(
                "return document.querySelector('#region-cards article').dataset.region")) != first
                and (share(b, r) or 0) > 0 and r)
            assert busiest in ("us-east-1", "us-east-2", "us-west-2")
            assert overlapping_labels(browser) == []
            shot(browser, "regions-outage")
            # The page's breaker agrees with /status.
            req = urllib.request.Request(gw["url"] + "/status", headers={"authorization": f"Bearer {ADMIN_KEY}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                status = json.loads(r.read())
            states = {b["target"].split("|")[1]: b["state"] for b in status["breakers"]
                      if b["target"].split("|")[1] == first}
            assert states.get(first) == "open", status["breakers"]
        finally:
            sim_control(fleet, "DELETE", f"/regions/{first}/faults")
    finally:
        traffic.stop()
    assert traffic.sent > 10

    # Totals on the page match /metrics once traffic stops (the page updates every second).
    def totals_match(b):
        page = sum(int(c.text) for c in b.find_elements(
            By.CSS_SELECTOR, '[data-model="chat"] [data-field="total"]'))
        with urllib.request.urlopen(gw["url"] + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        served = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("meridian_requests_total{") and 'model="chat"' in line
                     and 'outcome="success"' in line)
        return page if page == int(served) and page > 0 else None
    wait(browser, 5).until(totals_match)

    # Residency: only regions the policy allows, no violation banner.
    view(browser, "residency")
    row = browser.find_element(By.CSS_SELECTOR, '#residency-table tr[data-tenant="web"]')
    allowed = row.find_element(By.CSS_SELECTOR, 'td[data-field="allowed"]').text.split(", ")
    processed = [s.get_attribute("data-region") for s in row.find_elements(By.CSS_SELECTOR, "span[data-region]")]
    assert processed and all(r in allowed for r in processed), (processed, allowed)
    assert all(r.startswith("us-") for r in processed)
    assert row.find_elements(By.CSS_SELECTOR, "span.no") == []
    assert not browser.find_element(By.ID, "violations").is_displayed()
    shot(browser, "residency")

    # The live tail: one click opens a request's whole decision record.
    view(browser, "decisions")
    wait(browser, 5).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#tail tbody tr"))
    rid = browser.execute_script("return document.querySelector('#tail tbody tr').dataset.id")
    wait(browser, 5).until(lambda b: b.find_element(
        By.CSS_SELECTOR, f'#tail tr[data-id="{rid}"] button.open-record').click() or True)
    text = wait(browser, 5).until(lambda b: b.find_element(By.ID, "record-json").text or None)
    record = json.loads(text)
    assert record["requestId"] == rid
    assert record["meridian"]["decision"]["attempts"], record["meridian"]
    assert record["meridian"]["tenant"] == "web"
    shot(browser, "decision-record")
    browser.find_element(By.CSS_SELECTOR, "#record form button").click()

    view(browser, "tenants")
    wait(browser, 5).until(lambda b: b.find_elements(By.CSS_SELECTOR, '#tenant-table tr[data-tenant="web"]'))
    shot(browser, "tenants")

    # A drill started from the page, watched, and its report opened.
    view(browser, "drills")
    Select(browser.find_element(By.ID, "scenario")).select_by_value("region-outage")
    duration = browser.find_element(By.ID, "duration")
    duration.clear()
    duration.send_keys("8")
    browser.find_element(By.ID, "start-drill").click()
    wait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, 'article[data-drill][data-status="running"]'))
    wait(browser, 90, poll=1).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "button.show-report"))
    wait(browser, 5).until(lambda b: b.find_element(By.CSS_SELECTOR, "button.show-report").click() or True)
    frame = wait(browser, 10).until(lambda b: b.find_element(By.ID, "report") if b.find_element(
        By.ID, "report").is_displayed() else None)
    shot(browser, "drills")
    browser.switch_to.frame(frame)
    assert browser.find_element(By.TAG_NAME, "h1").text == "meridian drill: region-outage"
    assert browser.find_elements(By.TAG_NAME, "svg"), "the report's charts"
    browser.switch_to.default_content()

    # A phone-sized window still shows the regions.
    browser.set_window_size(390, 844)
    view(browser, "regions")
    assert browser.find_element(By.ID, "region-cards").is_displayed()
    shot(browser, "phone")
    browser.set_window_size(1280, 1000)

    errors = [l for l in browser.get_log("browser") if l["level"] == "SEVERE"]
    assert errors == [], errors


OVERLAPS = """
const boxes = [...document.querySelectorAll('#map text')].map((t) => [t.textContent, t.getBoundingClientRect()]);
const out = [];
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const [a, p] = boxes[i], [b, q] = boxes[j];
  if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) out.push([a, b]);
}
return out;
"""


def overlapping_labels(browser, regions=None):
    """Pairs of map labels whose boxes overlap, as the browser drew them
    (`regions`: drawn from this list instead, in the same script, so the
    page's next render does not get in between)."""
    if regions is None:
        return browser.execute_script(OVERLAPS)
    return browser.execute_script("renderMap(arguments[0]);" + OVERLAPS, regions)


def test_no_two_region_labels_overlap_with_every_catalog_region_on_the_map(gw, browser):
    # Every region Meridian knows, on one map: Europe's and Japan's
    # clusters are where labels used to print over each other.
    with open(ROOT / "catalog" / "regions.toml", "rb") as f:
        catalog = tomllib.load(f)["region"]
    regions = [{"region": r["code"], "lat": r["lat"], "lon": r["lon"], "models": [],
                "any_breaker_open": False} for r in catalog]
    assert len(regions) > 30
    browser.get(gw["url"] + "/ui")
    browser.execute_script("sessionStorage.setItem('meridian-admin-key', arguments[0])", ADMIN_KEY)
    browser.get(gw["url"] + "/ui")
    wait(browser, 10).until(lambda b: b.find_element(By.ID, "map").is_displayed())
    # The country outlines, compiled in and served by the gateway itself.
    land = wait(browser, 10).until(lambda b: b.execute_script(
        "const p = document.querySelector('#map path.land'); return p && p.getAttribute('d').length"))
    assert land > 50_000
    assert overlapping_labels(browser, regions) == []
    drawn = browser.execute_script("return document.querySelectorAll('#map text').length")
    assert drawn == len(regions)
    shot(browser, "map-every-region")


AXE = ROOT / ".axe-core" / "node_modules" / "axe-core" / "axe.min.js"
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ["violations"] })
  .then((r) => done({ version: axe.version, violations: r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) })) }))
  .catch((e) => done({ error: String(e) }));
"""


def test_axe_core_finds_no_serious_or_critical_violation_on_any_view(gw, browser):
    # axe-core from npm (scripts/test installs it) run in the page by
    # Chromium, on every view with the data the earlier tests left.
    assert AXE.exists(), "scripts/test installs axe-core from npm into .axe-core"
    browser.get(gw["url"] + "/ui")
    browser.execute_script("sessionStorage.setItem('meridian-admin-key', arguments[0])", ADMIN_KEY)
    browser.get(gw["url"] + "/ui")
    wait(browser, 10).until(lambda b: b.find_element(By.ID, "regions").is_displayed())
    browser.execute_script(AXE.read_text())
    browser.set_script_timeout(60)

    def audit(name):
        result = browser.execute_async_script(RUN_AXE)
        assert "error" not in result, result
        print(f"axe-core {result['version']}, {name}: "
              f"{[(v['id'], v['impact']) for v in result['violations']]}")
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], (name, bad)

    for name in ("regions", "residency", "decisions", "tenants", "drills"):
        view(browser, name)
        audit(f"view {name}")
    # The decision record, opened from the live tail (the earlier test's
    # requests are in it).
    view(browser, "decisions")
    wait(browser, 5).until(lambda b: b.find_element(By.CSS_SELECTOR, "#tail button.open-record").click() or True)
    wait(browser, 5).until(lambda b: b.find_element(By.ID, "record-json").text or None)
    audit("the decision record")
    browser.find_element(By.CSS_SELECTOR, "#record form button").click()


def test_no_browser_no_tail(gw):
    # Without a viewer no request is kept for the tail.
    snap = json.loads(urllib.request.urlopen(urllib.request.Request(
        gw["url"] + "/ui/api/snapshot?since=999999999", headers={"authorization": f"Bearer {ADMIN_KEY}"}),
        timeout=5).read())
    assert snap["tail"] == []
    assert re.fullmatch(r"\d+", str(snap["now"]))
