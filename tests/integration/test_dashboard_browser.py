"""The fleet dashboard in headless Chromium: it loads, draws, and updates while traffic flows.

The screenshot is kept as a test artefact (``$HETSERVE_TEST_ARTIFACTS``,
default ``test-artifacts/`` in the repository).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from tests.browser import Browser, find_chromium
from tests.conftest import EMULATED_MODEL

pytestmark = pytest.mark.engine

ARTIFACTS = Path(os.environ.get("HETSERVE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (`make browser` installs Debian's package with apt-get)")
    b = Browser(binary)
    try:
        yield b
    finally:
        b.close()


def _traffic(url: str, stop: threading.Event, sent: list[int]) -> None:
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            r = http.post(f"{url}/v1/completions",
                          json={"model": EMULATED_MODEL, "prompt": "dashboard " * 20, "max_tokens": 8})
            sent.append(r.status_code)


def test_dashboard_loads_draws_and_updates_under_traffic(gateway_url, browser):
    pools = [p["name"] for p in httpx.get(f"{gateway_url}/v1/fleet?profiles=false").json()["pools"]]
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{gateway_url}/dashboard")
    browser.wait_for("Number(document.body.dataset.polls) >= 1")
    assert browser.evaluate("document.body.dataset.error || ''") == ""
    rows = browser.evaluate("[...document.querySelectorAll('#pools tbody tr')].map(r => r.dataset.pool)")
    assert sorted(rows) == sorted(pools)
    assert browser.evaluate("document.getElementById('policy').textContent") == \
        httpx.get(f"{gateway_url}/v1/requests/recent").json()["policy"]
    # Heat maps: one per pool with a profile, every cell drawn.
    heatmaps = browser.evaluate("[...document.querySelectorAll('svg.heatmap')].map(s => s.dataset.pool)")
    assert set(heatmaps) >= {"h100", "rngd", "atom"}
    assert browser.evaluate("document.querySelectorAll('svg.heatmap rect.cell').length") >= 3 * 4

    seen = int(browser.evaluate("document.body.dataset.requestsSeen"))
    polls = int(browser.evaluate("document.body.dataset.polls"))
    stop, sent = threading.Event(), []
    threads = [threading.Thread(target=_traffic, args=(gateway_url, stop, sent)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        # Updates while traffic flows: new requests reach the table, the share and power charts.
        browser.wait_for(f"Number(document.body.dataset.requestsSeen) >= {seen + 6}", timeout_s=60)
        browser.wait_for(f"Number(document.body.dataset.polls) >= {polls + 4}")
        browser.wait_for("Number(document.getElementById('chart-share').dataset.points) > 0")
        browser.wait_for("Number(document.getElementById('chart-jpt').dataset.points) > 0")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sent and all(code == 200 for code in sent)
    requests = browser.evaluate(
        "[...document.querySelectorAll('#requests tbody tr')].map(r => [r.children[2].textContent, r.children[3].textContent])"
    )
    assert requests and {pool for pool, _ in requests} <= set(pools)
    assert all(reason for _, reason in requests)
    assert int(browser.evaluate("document.getElementById('chart-power').dataset.points")) > polls
    assert int(browser.evaluate("document.getElementById('chart-load').querySelectorAll('path').length")) == len(pools)
    browser.screenshot(ARTIFACTS / "dashboard.png")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
