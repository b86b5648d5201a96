"""`meridian drill --report` opened in a real headless Chromium (Debian's
chromium and chromium-driver, driven by selenium from PyPI): the page
renders both charts at their size, the per-region bars add up to what the
JSON report says each region served, the p99 line has a point per second,
the checks are listed, and the embedded report is the --json output."""
import json
import re
import subprocess

import pytest
from selenium.webdriver.common.by import By

from conftest import BIN, clean_env, headless_chromium


@pytest.fixture
def browser(tmp_path):
    driver = headless_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def test_the_html_report_renders_the_timeline_the_json_describes(tmp_path, browser):
    page = tmp_path / "report.html"
    run = subprocess.run([BIN, "drill", "region-outage", "--rate", "40", "--duration", "8", "--json",
                          "--report", str(page)],
                         env=clean_env(tmp_path), cwd=tmp_path, capture_output=True, timeout=120)
    assert run.returncode in (0, 1), run.stderr.decode()[-2000:]  # 1 = a check failed; the report is still written
    report = json.loads(run.stdout)
    assert report["requests"] == 320

    browser.get(page.as_uri())
    assert browser.title == "meridian drill region-outage"
    share, p99 = browser.find_elements(By.TAG_NAME, "svg")
    for svg in (share, p99):
        assert svg.size == {"width": 900, "height": 220}, "charts are laid out at their size"

    # Every bar is titled "Ns REGION: COUNT"; per region they add up to the JSON's totals.
    served = {}
    for rect in share.find_elements(By.CSS_SELECTOR, "rect"):
        title = rect.find_elements(By.TAG_NAME, "title")
        if not title:
            continue  # the shaded fault window
        m = re.fullmatch(r"(\d+)s ([a-z0-9-]+): (\d+)", title[0].get_attribute("textContent"))
        assert m, title[0].get_attribute("textContent")
        if m[2] != "failures":
            served[m[2]] = served.get(m[2], 0) + int(m[3])
        if int(m[3]) > 0:
            assert float(rect.get_attribute("height")) > 0
    assert served == report["served_by_region"]
    assert sum(served.values()) == report["succeeded"]
    assert report["served_by_region"].get("ca-central-1", 0) > 0, "the outage moved traffic"

    lines = p99.find_elements(By.TAG_NAME, "polyline")
    assert len(lines) == 2
    for line in lines:
        assert len(line.get_attribute("points").split()) == len(report["timeline"])

    checks = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "ul li")]
    assert len(checks) == len(report["checks"])
    for text, check in zip(checks, report["checks"]):
        assert text.startswith("PASS" if check["pass"] else "FAIL") and check["name"] in text

    embedded = json.loads(browser.find_element(By.TAG_NAME, "pre").text)
    assert embedded == report
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
