"""Tuning: seeded search whose winner loads through load_routing_config as is."""

from __future__ import annotations

import yaml

from fleet.config import load_fleet
from routing import load_routing_config
from sim import Workload
from sim.tune import Setting, GridPoint, candidates, tune

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_every_candidate_is_a_valid_routing_config():
    found = candidates(500.0, 50.0, seed=1)
    for c in found:
        load_routing_config(c.routing)
    assert found == candidates(500.0, 50.0, seed=1)
    assert found != candidates(500.0, 50.0, seed=2)
    packing = {pl["parameters"]["margin"] for c in found
               for pl in c.routing.get("plugins", ()) if pl["type"] == "packed-energy"}
    assert packing == {0.0, 0.1, 0.3}
    protect = {pl["parameters"]["protect_in_flight"] for c in found
               for pl in c.routing.get("plugins", ()) if pl["type"] == "predicted-slo" and "parameters" in pl}
    assert protect == {True, False}


def test_a_grid_setting_is_labelled_by_its_parameters_and_a_preset_by_its_name():
    found = candidates(None, None, seed=0)
    assert found[0] == Setting("efficiency", {"policy": "efficiency"})
    labels = [c.label for c in found]
    assert len(set(labels)) == len(labels)  # a label names one setting
    point = GridPoint("slo-energy", margin=0.2, headroom=None, average=0.5, load=0.0, saturation=0.75, packing=0.3,
                      protect=False)
    assert point.label == ("margin 0.2 protect False headroom none packing 0.3 efficiency 0.5 load 0 "
                           "saturation 0.75")
    (labelled,) = [c for c in found if c.label == point.label]
    slo = next(pl for pl in labelled.routing["plugins"] if pl["type"] == "predicted-slo")
    assert slo["parameters"] == {"margin": 0.2, "protect_in_flight": False}
    assert labelled.routing["spillover"] == {"saturation": 0.75}
    assert all(pl["type"] != "headroom" for pl in labelled.routing["plugins"])


def test_energy_winner_is_the_least_joules_among_slo_meeting_trials():
    w = Workload.synthetic(MODEL, 300, 8.0, seed=2)
    best, trials = tune(load_fleet()[0].pools, w, "energy", slo_ttft_ms=3000, slo_tpot_ms=200,
                        trials=6, budget_s=30)
    assert len(trials) == 6 and trials[0].routing == best
    meeting = [t for t in trials if t.meets_slo]
    assert meeting and trials[0].meets_slo
    assert trials[0].result.j_per_token_attributed == min(t.result.j_per_token_attributed for t in meeting)
    config = load_routing_config(yaml.safe_load(yaml.safe_dump(best)))
    assert config.policy == best["policy"]


def test_goodput_objective_prefers_more_good_requests():
    w = Workload.synthetic(MODEL, 300, 8.0, seed=2)
    _, trials = tune(load_fleet()[0].pools, w, "goodput", slo_ttft_ms=200, trials=4)
    rates = [t.result.goodput_rps for t in trials]
    assert rates == sorted(rates, reverse=True)
