"""The dashboard's static routes and the ring of recent requests (the browser test is in integration)."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway import dashboard, errors
from gateway.recent import RecentRequests
from routing.predictor import Prediction


def _client() -> TestClient:
    app = FastAPI()
    app.include_router(dashboard.router)
    errors.install_handlers(app, lambda body: None)
    return TestClient(app)


def test_page_and_its_assets_are_served_from_the_package():
    c = _client()
    page = c.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(dashboard/[^"]+)"', page.text)
    assert sorted(assets) == ["dashboard/dashboard.css", "dashboard/dashboard.js"]
    for a in assets:
        r = c.get("/" + a)
        assert r.status_code == 200 and r.text
    assert "http" not in c.get("/dashboard/dashboard.js").text.replace("http://www.w3.org/2000/svg", "")


def test_only_dashboard_files_are_served():
    c = _client()
    for name in ("../app.py", "..%2Fapp.py", "nothing.js", "dashboard.py"):
        r = c.get("/dashboard/" + name)
        assert r.status_code == 404, name
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_recent_requests_is_a_bounded_ring_read_after_a_sequence_number():
    t = iter(range(100, 200))
    ring = RecentRequests(size=3, clock=lambda: float(next(t)))
    for i in range(5):
        ring.add("m", f"p{i}", f"why {i}", 10, 20, 0.1, 0.5, 1.5)
    assert ring.last_seq == 5
    assert [r.seq for r in ring.after()] == [3, 4, 5]  # the two oldest fell out
    assert [r.pool for r in ring.after(4)] == ["p4"]
    assert ring.after(5) == []
    assert [r.seq for r in ring.after(0, limit=2)] == [4, 5]
    r = ring.after(4)[0]
    assert (r.route_reason, r.finished, r.ttft_ms, r.e2e_ms) == ("why 4", 104.0, 100.0, 500.0)
    assert r.predicted_ttft_ms is None and r.predicted_tpot_ms is None  # the policy made no forecast


def test_recent_requests_carry_the_forecast_the_request_was_routed_on():
    ring = RecentRequests(size=3)
    forecast = Prediction(120.0, 14.5, 100.0, 12.0, 0, ())
    ring.add("m", "h100", "why", 10, 20, 0.1, 0.5, 1.5, forecast)
    r = ring.after()[0]
    assert (r.predicted_ttft_ms, r.predicted_tpot_ms) == (120.0, 14.5)  # corrected, as the router used it
