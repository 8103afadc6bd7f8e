"""docs/grafana-dashboard.json against a real Prometheus scraping the running gateway.

Debian's ``prometheus`` package (``make prometheus`` installs it) gives both
the server and ``promtool``. Prometheus scrapes ``/metrics`` every second;
then every panel's PromQL is evaluated with the dashboard's variables bound
to "any non-empty value" (``.+``, so a matcher on a label the series lack
finds nothing): it must parse, and where the gateway has exported its
metrics it must return series carrying every label the panel groups by.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from deploy.ingress import free_port
from tests.conftest import EMULATED_MODEL, REAL_MODEL
from tests.unit.test_grafana_dashboard import DASHBOARD, expressions, metric_names

pytestmark = pytest.mark.engine

_VARIABLES = {"$model": ".+", "$pool": ".+", "$__rate_interval": "20s", "$__range": "1m"}


def _bind(expr: str) -> str:
    for var, value in _VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def _grouping_labels(expr: str) -> set[str]:
    return {label.strip() for m in re.finditer(r"\bby\s*\(([^)]*)\)", expr) for label in m.group(1).split(",")} - {"le"}


@pytest.fixture(scope="module")
def scrape(gateway_url) -> str:
    """Traffic on both models, then one scrape (after a poll of the pools)."""
    for model in (REAL_MODEL, EMULATED_MODEL):
        for _ in range(3):
            r = httpx.post(f"{gateway_url}/v1/completions", json={"model": model, "prompt": "p", "max_tokens": 3}, timeout=30)
            assert r.status_code == 200
    httpx.post(f"{gateway_url}/v1/completions", json={"model": "nope", "prompt": "p"}, timeout=30)
    time.sleep(1.2)
    return httpx.get(f"{gateway_url}/metrics").text


@pytest.fixture(scope="module")
def prometheus(gateway_url, scrape):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (`make prometheus` installs Debian's package with apt-get)")
    work = tempfile.mkdtemp(prefix="hetserve-prometheus-")
    target = gateway_url.removeprefix("http://")
    config = Path(work) / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: hetserve, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={work}/data", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # three scrapes in: rate() has points
            try:
                r = httpx.get(f"{url}/api/v1/query", params={"query": "count_over_time(up[1m])"})
                if r.status_code == 200 and r.json()["data"]["result"] and float(r.json()["data"]["result"][0]["value"][1]) >= 3:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not scrape the gateway three times within 30 s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _query(url: str, expr: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def test_promtool_accepts_the_exposition(scrape):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (`make prometheus` installs Debian's package with apt-get)")
    done = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_target_is_up(prometheus):
    assert [float(s["value"][1]) for s in _query(prometheus, 'up{job="hetserve"}')] == [1.0]


def test_every_panel_query_runs_and_finds_its_series_and_labels(prometheus, scrape):
    exported = {line.split()[0].split("{")[0] for line in scrape.splitlines() if line and not line.startswith("#")}
    checked = 0
    for expr in expressions(json.loads(DASHBOARD.read_text())):
        result = _query(prometheus, _bind(expr))
        if not metric_names(expr) <= exported:
            continue  # retries, ejections, per-key usage: nothing happened yet that exports them
        assert result, f"no series for {expr}"
        for series in result:
            missing = _grouping_labels(expr) - set(series["metric"])
            assert not missing, f"{expr}: series lack {missing}: {series['metric']}"
        checked += 1
    assert checked >= 15  # traffic, latency, tokens, energy and the pool gauges


def test_template_variables_find_their_labels(prometheus):
    for v in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"]).groups()
        values = {s["metric"].get(label) for s in _query(prometheus, f"group by ({label}) ({metric})")}
        assert values and None not in values, v["query"]["query"]
