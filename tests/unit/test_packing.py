"""Packed cost per token (``routing.packing``) and the slo-energy policy that
ranks by it: traffic goes to the pool that is cheapest when full, not to
whichever pool is busy now."""

from __future__ import annotations

import pytest

from fleet.trace import TraceRecord
from routing import RequestShape, load_routing_config
from routing.packing import column_point, packed_batch, packed_cost_per_mtok
from sim.run import simulate
from sim.workload import Workload
from tests.unit.test_slo_energy import CHEAP, MODEL, PRICEY, _pool, _profile, _router
from workers.spec import PoolSpec

BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TPOTS = (10.0, 10.2, 10.5, 11.0, 12.0, 14.0, 18.0, 26.0, 42.0)


@pytest.mark.parametrize("slots, limit, expected_batch", [
    (256, None, 256),   # no target: as full as the slots allow
    (64, None, 64),     # the slots cap it
    (256, 20.0, 64),    # the largest batch whose TPOT meets the limit
    (256, 11.0, 8),
    (256, 5.0, 1),      # none meets it: the first bucket (the pool's best)
    (32, 30.0, 32),
])
def test_packed_batch_is_the_largest_bucket_the_target_and_the_slots_allow(slots, limit, expected_batch):
    assert BUCKETS[packed_batch(BUCKETS, TPOTS, slots, limit)] == expected_batch


def test_packed_batch_skips_buckets_without_data():
    assert packed_batch(BUCKETS, (None, None, 10.0, None, 12.0) + (None,) * 4, 256, None) == 4
    assert packed_batch(BUCKETS, (None,) * 9, 256, None) is None


def test_packed_figures_read_the_profile_cell_at_the_packed_batch():
    # CHEAP: step 20 × (1 + b/64) ms, 1 + 0.02 b J; TPOT ≤ 45 ms allows b ≤ 80: bucket 64 of 64 slots
    def packed_point(prof, seq, slots, limit):
        col = prof.column(seq)
        return None if col is None else column_point(prof.batch_buckets, col, slots, limit)

    point = packed_point(CHEAP, 600, 64, 45.0)
    assert point.batch == 64 and point.j_per_token == pytest.approx((1 + 0.02 * 64) / 64)
    assert point.ms_per_token == pytest.approx(20.0 * 2 / 64)
    assert packed_point(CHEAP, 600, 256, None).j_per_token == pytest.approx((1 + 0.02 * 256) / 256)
    # $/Mtok: price per second × seconds per token at the packed batch
    assert packed_cost_per_mtok(point, 3.6) == pytest.approx(1e-3 * 40.0 / 64 / 1e3 * 1e6)
    assert packed_cost_per_mtok(point, 0.0) is None
    assert packed_point(CHEAP, 10 ** 6, 64, None) is None  # past the profile's longest sequence


def test_an_idle_pool_that_is_cheaper_when_full_beats_a_busy_one():
    """The myopic marginal scorer sends the request to the busy pool (joining
    costs it only the slope); the packed scorer to the pool that, filled,
    spends a third of the joules per token, so traffic consolidates there."""
    shape = RequestShape(MODEL, 500, 100)
    pools = [_pool(PRICEY, in_flight=32, running=32, decode_tokens=32 * 100), _pool(CHEAP)]
    assert _router("slo-marginal-energy").choose(shape, pools).best.name == "pricey"
    d = _router("slo-energy").choose(shape, pools)
    assert d.best.name == "cheap" and d.policy == "slo-energy"
    assert "cheap: 0.0356 J/tok when packed to batch 64; ttft 100 ms" in d.reason


def test_the_target_decides_which_pool_is_cheapest_when_full():
    # fast: 10 ms steps, 4 J + 0.01 J/seq; slow: 40 ms steps, 1 J + 0.01 J/seq
    fast = _profile("fast", step_ms=10.0, prefill_ms_per_tok=0.05, base_j=4.0, slope_j=0.01)
    slow = _profile("slow", step_ms=40.0, prefill_ms_per_tok=0.05, base_j=1.0, slope_j=0.01)
    pools = [_pool(fast, capacity=256), _pool(slow, capacity=256)]
    # relaxed: slow packs to 256 (1 + 2.56) / 256 < fast (4 + 2.56) / 256
    assert _router().choose(RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=300), pools).best.name == "slow"
    # tight: slow fits only batch 1 under 45 ms, fast packs to 256 under 45 ms
    assert _router().choose(RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=50), pools).best.name == "fast"


def test_the_cheap_pool_spills_to_the_next_when_its_forecast_misses():
    queued = _pool(CHEAP, in_flight=20, prefilling=20, prefill_tokens=40_000, decode_tokens=20 * 100)
    shape = RequestShape(MODEL, 500, 100, slo_ttft_ms=500, slo_tpot_ms=50)
    d = _router().choose(shape, [queued, _pool(PRICEY)])
    assert d.best.name == "pricey" and d.dropped[0].name == "cheap"


def test_packing_parameters_are_validated_by_name():
    with pytest.raises(Exception, match=r"plugins\[0\]: parameters\.margin: Input should be less than 1"):
        load_routing_config({"plugins": [{"type": "packed-energy", "parameters": {"margin": 1.5}}],
                             "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "packed-energy"}]}]})


def test_in_simulation_slo_energy_packs_a_trickle_onto_one_pool_and_spends_less():
    """Two identical emulated pools and a light trickle: packing keeps one
    busy and the other idle, where least-load runs both at half the batch."""
    specs = [PoolSpec(name=n, hardware="h100", engine="emulated", model="llama-3.1-8b",
                      models=["meta-llama/Llama-3.1-8B-Instruct"], engine_args={"max_batch": 64}) for n in ("a", "b")]
    records = [TraceRecord(t=0.25 * i, model="meta-llama/Llama-3.1-8B-Instruct", prompt_tokens=300,
                           output_tokens=200) for i in range(120)]
    w = Workload.from_records(records)
    packed = simulate(specs, w, {"policy": "slo-energy"}, seed=1)
    shares = sorted(p.share for p in packed.pools)
    assert shares[-1] > 0.95
    assert packed.slo_attainment >= simulate(specs, w, {"policy": "least-load"}, seed=1).slo_attainment
    assert packed.j_per_token_attributed < simulate(specs, w, {"policy": "least-load"}, seed=1).j_per_token_attributed


def test_the_scorer_rereads_a_column_the_profile_has_relearned():
    from routing.policies import PackedEnergyScorer
    from routing.profile import Cell
    prof = _profile("learns", step_ms=20.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
    pool = _pool(prof)
    scorer, shape = PackedEnergyScorer(0.1, 45.0), RequestShape(MODEL, 300, 100)
    before = scorer.point(shape, pool)
    assert scorer.point(shape, pool) is before  # memoised while the column is unchanged
    prof.put(Cell(64, 512, ttft_ms=50.0, tpot_ms=30.0, j_per_token=0.5, samples=1, provenance="online"))
    assert scorer.point(shape, pool).j_per_token == pytest.approx(0.5)
