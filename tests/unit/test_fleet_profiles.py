"""Modelled profiles: fast, consistent with the batcher, showing the NPU crossover."""

from __future__ import annotations


import pytest

from fleet.config import load_fleet
from fleet.profiles import engine_figures, fleet_profiles, operating_point
from workers.emulation.batcher import ContinuousBatcher, Sequence
from workers.hardware import get_hardware, get_model


def test_default_fleet_profiles_cover_every_pool():
    pools = load_fleet()[0].pools
    profiles = fleet_profiles(pools)
    assert set(profiles) == {p.name for p in pools}
    cell = profiles["h100"].lookup(8, 1000)
    assert cell.provenance == "modelled" and cell.samples == 0
    assert cell.j_per_token > 0 and cell.tpot_ms > 0 and cell.cost_per_mtok > 0


def test_batch_one_matches_stepping_the_batcher():
    hw, model = get_hardware("h100"), get_model("llama-3.1-8b")
    batcher = ContinuousBatcher(hw, model, 1)
    batcher.add(Sequence("s", 512, 512))
    steps = []
    while (step := batcher.step()) is not None:
        steps.append(step)
    op = operating_point(hw, model, 1, 512, 512)
    assert op.ttft_s == pytest.approx(steps[0].duration_s, rel=1e-6)
    assert op.tpot_s == pytest.approx(sum(s.duration_s for s in steps) / 512, rel=0.02)
    assert op.j_per_token == pytest.approx(sum(s.energy_j for s in steps) / 512, rel=0.02)


def test_npu_wins_small_batches_gpu_wins_large_ones():
    profiles = fleet_profiles(load_fleet()[0].pools)
    h100, rngd = profiles["h100"], profiles["rngd"]
    assert rngd.lookup(1, 1024).j_per_token < h100.lookup(1, 1024).j_per_token
    assert h100.lookup(256, 1024).j_per_token < rngd.lookup(256, 1024).j_per_token


def test_past_the_compiled_length_is_infeasible():
    profiles = fleet_profiles(load_fleet()[0].pools)
    assert profiles["atom"].lookup(1, 16384).feasible is False
    assert profiles["h100"].lookup(1, 16384).feasible is True


def test_a_model_outside_the_catalog_has_no_figures():
    spec = load_fleet()[0].pools[0].model_copy(update={"engine": "vllm", "model": "/models/x"})
    assert engine_figures(spec) is None
