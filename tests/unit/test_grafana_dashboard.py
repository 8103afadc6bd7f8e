"""docs/grafana-dashboard.json refers only to metrics the gateway exports."""

from __future__ import annotations

from fleet.api import PoolView

import json
import re
from pathlib import Path

import pytest

from gateway.metrics import GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

# Sample names prometheus_client derives from a family's name, by family type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "inf", "nan",
}


def exported_samples() -> tuple[set[str], set[str]]:
    """(family names, sample names) of every metric in the gateway's registry."""
    families, samples = set(), set()
    for family in GatewayMetrics().registry.collect():
        families.add(family.name)
        samples.update(family.name + s for s in _SUFFIXES[family.type])
    return families, samples


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, labels or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors ([$__rate_interval], [5m])
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def _panels(panels):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def expressions(dashboard: dict) -> list[str]:
    return [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr")]


def test_suffix_rules_match_what_the_registry_emits():
    m = GatewayMetrics()
    m.routed("m", "p")
    m.error("server_error", 500)
    m.finished("m", "p", "ok", 0.1, 0.5, 10, 20, 3.0)
    m.update_pools([PoolView(name="p", in_flight=1, waiting=0, output_tokens=20, energy_joules=3.0,
                             energy_total_joules=9.0, power_source="modelled")])
    m.key_usage("team", 5, 20, 3.0)
    m.retried("m", "p")
    m.retry_denied("m")
    m.pool_failed("p", True)
    m.stream_broken("m", "p")
    emitted = {s.name for f in m.registry.collect() for s in f.samples}
    _, expected = exported_samples()
    assert emitted <= expected
    assert {n for n in expected if not n.endswith("_created")} <= emitted


def test_parser_finds_metrics_and_skips_functions_and_labels():
    expr = ('histogram_quantile(0.99, sum by (le, pool) '
            '(rate(hetserve_time_to_first_token_seconds_bucket{pool=~"$pool"}[$__rate_interval])))'
            " / on (pool) group_left hetserve_pool_waiting_sequences")
    assert metric_names(expr) == {"hetserve_time_to_first_token_seconds_bucket", "hetserve_pool_waiting_sequences"}


def test_dashboard_metrics_are_exported(dashboard):
    _, samples = exported_samples()
    exprs = expressions(dashboard)
    assert exprs, "no panel expressions found"
    unknown = {name: e for e in exprs for name in metric_names(e) if name not in samples}
    assert not unknown, f"metrics the gateway does not export: {unknown}"


def test_template_variables_use_exported_metrics(dashboard):
    _, samples = exported_samples()
    for v in dashboard["templating"]["list"]:
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert m, query
        assert m.group(1) in samples, query


def test_every_exported_family_is_on_the_dashboard(dashboard):
    families, _ = exported_samples()
    used = {n for e in expressions(dashboard) for n in metric_names(e)}
    missing = {f for f in families if not any(u == f or u.startswith(f + "_") for u in used)}
    assert not missing, f"exported but not charted: {missing}"


def test_datasource_is_an_import_input(dashboard):
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    for p in _panels(dashboard["panels"]):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    ids = [p["id"] for p in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == [
        "Traffic", "Latency", "Tokens & energy", "Queues",
    ]
