"""Tuning: seeded search whose winner loads through load_routing_config as is."""

from __future__ import annotations

import yaml

from fleet.config import load_fleet
from routing import load_routing_config
from sim import Workload
from sim.tune import candidates, tune

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_every_candidate_is_a_valid_routing_config():
    for c in candidates(500.0, 50.0, seed=1):
        load_routing_config(c)
    assert candidates(500.0, 50.0, seed=1) == candidates(500.0, 50.0, seed=1)
    assert candidates(500.0, 50.0, seed=1) != candidates(500.0, 50.0, seed=2)
    packing = {pl["parameters"]["margin"] for c in candidates(500.0, 50.0, seed=1)
               for pl in c.get("plugins", ()) if pl["type"] == "packed-energy"}
    assert packing == {0.0, 0.1, 0.3}
    protect = {pl["parameters"]["protect_in_flight"] for c in candidates(500.0, 50.0, seed=1)
               for pl in c.get("plugins", ()) if pl["type"] == "predicted-slo" and "parameters" in pl}
    assert protect == {True, False}


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
