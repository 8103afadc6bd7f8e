"""Routing YAML: validation errors name the bad key; build_router wires it up."""

from __future__ import annotations

import random

import pytest

from routing import (
    PoolState,
    RequestShape,
    RoutingConfigError,
    build_router,
    load_routing_config,
)

YAML = """\
policy: slo-efficiency
slo: {ttft_ms: 2000, tpot_ms: 100}
scorers: {efficiency: 1.0, load: 0.2}
spillover: {saturation: 0.9, retry_after_s: 3}
"""


def test_loads_yaml_file(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(YAML)
    cfg = load_routing_config(path)
    assert cfg.policy == "slo-efficiency" and cfg.slo.tpot_ms == 100
    assert cfg.scorers == {"efficiency": 1.0, "load": 0.2}
    assert cfg.spillover.saturation == 0.9


def test_defaults_from_empty_dict():
    cfg = load_routing_config({})
    assert cfg.policy == "slo-energy" and cfg.spillover.saturation == 1.0


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"policy": "greedy"}, "policy: unknown policy 'greedy'; valid: efficiency, cost, slo-efficiency"),
        ({"scorers": {"speed": 1}}, "scorers: unknown scorer 'speed'; valid: efficiency, cost, latency, load"),
        ({"slo": {"ttft": 5}}, "slo.ttft"),
        ({"spillover": {"saturation": 0}}, "spillover.saturation"),
        ({"polcy": "cost"}, "polcy"),
        ({"policy": "random", "scorers": {"load": 1}}, "policy 'random' ranks without scorers"),
        ({"policy": "efficiency", "scorers": {"efficiency": 0}}, "no scorer with a positive weight"),
    ],
)
def test_bad_config_names_the_bad_key(data, expected):
    with pytest.raises(RoutingConfigError) as e:
        load_routing_config(data)
    assert expected in str(e.value)


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("policy: [unclosed\n")
    with pytest.raises(RoutingConfigError, match="routing.yaml: not valid YAML"):
        load_routing_config(path)


def test_build_router_injects_clock_and_spillover():
    cfg = load_routing_config({"policy": "least-load", "spillover": {"saturation": 0.5}})
    router = build_router(cfg, clock=lambda: 42.0)
    pools = [PoolState("a", "hw", ("m",), running=4, capacity=8), PoolState("b", "hw", ("m",), capacity=8)]
    d = router.choose(RequestShape("m", 10, 10), pools)
    assert d.at == 42.0 and [r.name for r in d.ranked] == ["b"]


def test_build_router_seeds_random_from_config_or_injected_rng():
    pools = [PoolState(n, "hw", ("m",), capacity=8) for n in "abcd"]
    shape = RequestShape("m", 10, 10)

    def picks(router):
        return [router.choose(shape, pools).best.name for _ in range(20)]

    cfg = load_routing_config({"policy": "random", "seed": 3})
    assert picks(build_router(cfg)) == picks(build_router(cfg))
    assert picks(build_router(cfg, rng=random.Random(3))) == picks(build_router(cfg))
