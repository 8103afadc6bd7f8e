"""The run spec: base URLs given the OpenAI way, a trace replays whole unless told otherwise."""

from __future__ import annotations

import pytest

from loadtests.config import DEFAULT_REQUESTS, DataSpec, LoadSpec, RunSpec


@pytest.mark.parametrize(
    "given",
    ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"],
)
def test_base_url_with_or_without_v1_is_the_server_root(given):
    assert RunSpec(base_url=given).base_url == "http://h:8000"


def test_a_path_prefix_before_v1_is_kept():
    assert RunSpec(base_url="https://gw.example/llm/v1").base_url == "https://gw.example/llm"
    assert RunSpec(base_url="https://gw.example/v1x").base_url == "https://gw.example/v1x"


def test_trace_replays_whole_by_default(tmp_path):
    spec = RunSpec(load=LoadSpec(arrival="trace"), data=DataSpec(dataset="trace", trace="t.jsonl"))
    assert spec.load.requests is None and spec.load.duration_s is None
    closed = RunSpec(load=LoadSpec(arrival="closed", concurrency=4), data=DataSpec(dataset="trace", trace="t.jsonl"))
    assert closed.load.requests is None


def test_synthetic_data_defaults_to_a_bounded_run():
    assert RunSpec(load=LoadSpec(arrival="poisson", rate=2)).load.requests == DEFAULT_REQUESTS
    assert RunSpec(load=LoadSpec(arrival="poisson", rate=2, duration_s=5)).load.requests is None
    assert RunSpec(load=LoadSpec(arrival="trace"), data=DataSpec(dataset="trace", trace="t"),
                   ).load.requests is None


def test_explicit_request_count_still_cuts_a_trace():
    spec = RunSpec(load=LoadSpec(arrival="trace", requests=10), data=DataSpec(dataset="trace", trace="t"))
    assert spec.load.requests == 10
