"""Policies as configuration: plugins and scheduling profiles in the routing
YAML, presets that equal their expansion, errors that name the bad key."""

from __future__ import annotations

import random

import pytest

from routing import (
    POLICIES,
    Cell,
    EfficiencyProfile,
    PoolState,
    RequestShape,
    RoutingConfigError,
    build_router,
    load_routing_config,
)
from routing.errors import RoutingError
from routing.presets import expand

MODEL = "m"


def _profile(name, step_ms, j1, slope):
    cells = [Cell(b, s, ttft_ms=step_ms * s / 100, tpot_ms=step_ms * (1 + b / 64), j_per_token=(j1 + slope * b) / b,
                  cost_per_mtok=j1 * 10, throughput_tok_s=1000.0 * b / step_ms, samples=5)
             for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) for s in (128, 256, 512, 1024, 2048, 4096)]
    return EfficiencyProfile(name, "h100", MODEL, cells=cells)


def _fleets(seed, n=12):
    rng = random.Random(seed)
    profs = [_profile(f"p{i}", rng.uniform(5, 40), rng.uniform(0.5, 3), rng.uniform(0.01, 0.1)) for i in range(4)]
    out = []
    for _ in range(n):
        fleet = []
        for p in profs:
            load = rng.randrange(0, 60)
            fleet.append(PoolState(p.pool, "h100", (MODEL,), in_flight=load, running=load, capacity=64,
                                   prefilling=rng.randrange(0, 4), prefill_tokens=rng.randrange(0, 4000),
                                   decode_tokens=load * 200, price_per_hour=rng.uniform(0.5, 3), profile=p))
        out.append(fleet)
    return out


SHAPES = [RequestShape(MODEL, 300, 200), RequestShape(MODEL, 1500, 50, 2, slo_ttft_ms=400, slo_tpot_ms=30),
          RequestShape(MODEL, 100, 400, slo_ttft_ms=5000, slo_tpot_ms=100)]


def _decisions(config):
    router = build_router(load_routing_config(config), clock=lambda: 0.0, rng=random.Random(3))
    out = []
    for fleet in _fleets(1):
        for shape in SHAPES:
            try:
                d = router.choose(shape, fleet)
                out.append((d.policy, [r.name for r in d.ranked], [round(r.score, 9) for r in d.ranked]))
            except RoutingError as e:
                out.append(type(e).__name__)
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_every_preset_equals_its_expansion(policy):
    slo = {"slo": {"ttft_ms": 800, "tpot_ms": 60}}
    short = load_routing_config({"policy": policy, **slo})
    spelled = load_routing_config({"policy": policy, **expand(policy), **slo})
    assert short.expanded() == spelled.expanded()
    assert _decisions({"policy": policy, **slo}) == _decisions({"policy": policy, **expand(policy), **slo})


def test_scorer_weights_adjust_the_presets_main_profiles():
    doc = load_routing_config({"policy": "slo-energy", "scorers": {"load": 0.3, "marginal-energy": 2}}).expanded()
    main, shared, fallback = doc["schedulingProfiles"]
    assert {"pluginRef": "load", "weight": 0.3} in main["plugins"] and {"pluginRef": "load", "weight": 0.3} in shared["plugins"]
    assert {"pluginRef": "marginal-energy", "weight": 2} in main["plugins"]
    assert all(r["pluginRef"] != "load" for r in fallback["plugins"])
    assert {"type": "load"} in doc["plugins"]


def test_a_custom_policy_composes_plugins_by_name():
    cfg = {
        "policy": "tight-energy",
        "slo": {"ttft_ms": 1000},
        "plugins": [
            {"name": "strict", "type": "predicted-slo", "parameters": {"margin": 0.3, "tpot_ms": 40}},
            {"type": "marginal-energy"},
            {"type": "load"},
            {"type": "slo-violation"},
        ],
        "schedulingProfiles": [
            {"name": "green", "plugins": [{"pluginRef": "strict"}, {"pluginRef": "marginal-energy", "weight": 2},
                                          {"pluginRef": "load", "weight": 0.5}]},
            {"name": "rescue", "plugins": [{"pluginRef": "slo-violation"}]},
        ],
    }
    router = build_router(load_routing_config(cfg), clock=lambda: 0.0)
    assert [p.name for p in router.profiles] == ["green", "rescue"]
    green = router.profiles[0]
    assert green.filters[0].scale == pytest.approx(0.7) and green.filters[0].tpot_ms == 40
    assert green.filters[0].ttft_ms == 1000  # from routing.slo
    assert [(s.name, w) for s, w in green.scorers] == [("marginal-energy", 2), ("load", 0.5)]
    assert router.predictor is not None
    d = router.choose(RequestShape(MODEL, 300, 100), _fleets(2, 1)[0])
    assert set(d.best.scores) == {"marginal-energy", "load"}


@pytest.mark.parametrize("data, expected", [
    ({"plugins": [{"type": "fastest"}], "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "fastest"}]}]},
     "plugins[0].type: unknown plugin type 'fastest'; valid: efficiency"),
    ({"plugins": [{"type": "load"}, {"type": "predicted-slo", "parameters": {"margin": 2}}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "load"}]}]},
     "plugins[1]: parameters.margin: Input should be less than 1"),
    ({"plugins": [{"type": "load"}, {"type": "headroom", "parameters": {"reserve": 2}}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "load"}]}]},
     "plugins[1]: parameters.reserve: Extra inputs are not permitted"),
    ({"plugins": [{"type": "load"}], "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "lod"}]}]},
     "schedulingProfiles[0].plugins[0].pluginRef: unknown plugin 'lod'; defined: load"),
    ({"plugins": [{"type": "load"}, {"type": "slo"}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "slo", "weight": 1}, {"pluginRef": "load"}]},
                             {"name": "b", "plugins": [{"pluginRef": "load"}]}]},
     "schedulingProfiles[0].plugins[0].weight: 'slo' is a filter; only scorers take a weight"),
    ({"plugins": [{"type": "load"}, {"type": "slo"}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "slo"}, {"pluginRef": "load"}]}]},
     "schedulingProfiles[0]: the last scheduling profile must have no filters"),
    ({"plugins": [{"type": "load"}, {"type": "load"}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "load"}]}]},
     "plugins[1].name: a second plugin named 'load'"),
    ({"plugins": [{"type": "load"}, {"type": "random"}, {"type": "round-robin"}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "random"}, {"pluginRef": "round-robin"}]}]},
     "schedulingProfiles[0].plugins: more than one picker"),
    ({"plugins": [{"type": "load"}], "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "load", "weight": 0}]}]},
     "schedulingProfiles[0]: profile 'a' has no scorer with a positive weight"),
    ({"plugins": [{"type": "load"}], "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRf": "load"}]}]},
     "schedulingProfiles[0].plugins[0].pluginRef: Field required"),
    ({"plugins": [{"type": "load"}]}, "plugins and schedulingProfiles: give both"),
    ({"policy": "slo-energy", "scorers": {"load": 1}, "plugins": [{"type": "load"}],
      "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "load"}]}]},
     "scorers: only adjusts a preset"),
    ({"predictor": {"alpha": 0}}, "predictor.alpha: Input should be greater than 0"),
    ({"policy": "slo-energy", "scorers": {"packed-energy": 0, "prefill-queue": 0}},
     "profile 'slo-energy' has no scorer"),
])
def test_config_errors_name_the_bad_key(data, expected):
    with pytest.raises(RoutingConfigError) as e:
        load_routing_config(data)
    assert expected in str(e.value)


def test_default_policy_is_slo_energy_and_reads_forecasts():
    cfg = load_routing_config({})
    assert cfg.policy == "slo-energy"
    router = build_router(cfg)
    assert router.predictor is not None
    assert [p.name for p in router.profiles] == ["slo-energy", "slo-energy-shared", "best-outcome"]
    assert build_router(load_routing_config({"policy": "least-load"})).predictor is None
