"""Queue-aware forecasts, marginal energy and the slo-energy policy, on fake
pools with hand-made profiles and a fake clock."""

from __future__ import annotations

import math

import pytest

from routing import (
    Cell,
    EfficiencyProfile,
    LatencyPredictor,
    PoolState,
    RateMeter,
    RequestShape,
    TargetTracker,
    build_router,
    load_routing_config,
)
from routing.marginal import marginal_energy

MODEL = "m"
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SEQS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def _profile(name, *, step_ms, prefill_ms_per_tok, base_j, slope_j):
    """A replica whose decode step at batch b takes ``step_ms × (1 + b/64)`` and spends
    ``base_j + slope_j × b`` joules above idle, and prefills at a fixed rate."""
    cells = [
        Cell(b, s, ttft_ms=prefill_ms_per_tok * s / 2, tpot_ms=step_ms * (1 + b / 64),
             j_per_token=(base_j + slope_j * b) / b, samples=10, provenance="calibrated")
        for b in BATCHES for s in SEQS
    ]
    return EfficiencyProfile(name, "h100", MODEL, cells=cells)


CHEAP = _profile("cheap", step_ms=20.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
PRICEY = _profile("pricey", step_ms=10.0, prefill_ms_per_tok=0.05, base_j=3.0, slope_j=0.05)


def _pool(profile, **kw):
    kw.setdefault("capacity", 64)
    return PoolState(profile.pool, "h100", (MODEL,), profile=profile, **kw)


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _router(policy="slo-energy", **cfg):
    return build_router(load_routing_config({"policy": policy, **cfg}), clock=FakeClock())


TIGHT = RequestShape(MODEL, prompt_tokens=500, max_new_tokens=100, slo_ttft_ms=500, slo_tpot_ms=50)


def test_idle_cheap_pool_wins_when_both_meet_the_slo():
    d = _router().choose(TIGHT, [_pool(PRICEY), _pool(CHEAP)])
    assert d.best.name == "cheap" and d.policy == "slo-energy"
    assert d.best.prediction.ttft_ms == pytest.approx(0.2 * 500)  # an idle pool: just the prefill


def test_an_empty_prompt_on_an_idle_pool_is_forecast_with_no_prefill():
    empty = RequestShape(MODEL, prompt_tokens=0, max_new_tokens=10, slo_ttft_ms=500, slo_tpot_ms=50)
    d = _router().choose(empty, [_pool(PRICEY), _pool(CHEAP)])
    assert d.best.prediction.ttft_ms == 0.0 and d.best.prediction.own_prefill_ms == 0.0
    assert d.best.prediction.marginal_j_per_token > 0


def test_a_long_queue_on_the_cheap_pool_sends_tight_traffic_to_the_idle_pricey_pool():
    # 20 prompts of 2000 tokens wait on the cheap pool: ~8 s of prefill ahead of this request.
    queued = _pool(CHEAP, in_flight=20, prefilling=20, prefill_tokens=40_000, decode_tokens=20 * 100)
    d = _router().choose(TIGHT, [queued, _pool(PRICEY)])
    assert d.best.name == "pricey"
    assert [x.name for x in d.dropped] == ["cheap"] and d.dropped[0].why.startswith("slo: ttft")
    assert d.dropped[0].prediction.ttft_ms > 8000
    shown = d.dropped[0].prediction.to_dict()  # what /v1/routing/explain shows per pool
    assert shown["ttft_ms"] > 8000 and shown["marginal_j_per_token"] > 0 and shown["queued"] == 0
    assert shown["own_prefill_ms"] == pytest.approx(0.2 * 500) and shown["tpot_without_ms"] > 0
    assert "skipped cheap (slo: ttft" in d.reason
    # the queue-blind policy reads the same cells and keeps piling onto the cheap pool
    assert _router("slo-efficiency").choose(TIGHT, [queued, _pool(PRICEY)]).best.name == "cheap"


def test_a_full_batch_makes_the_request_wait_for_a_slot():
    full = _pool(CHEAP, in_flight=80, running=64, waiting=16, decode_tokens=80 * 200, max_batch=64)
    idle = LatencyPredictor().predict(_pool(CHEAP), TIGHT, 1, CHEAP.lookup(1, 600))
    busy = LatencyPredictor().predict(full, TIGHT, 64, CHEAP.lookup(64, 600))
    assert busy.queued == 80 + 1 - 64
    # 17 slots to free at 64 per 200 steps of 40 ms: ~2.1 s, plus the prefill and a step
    assert busy.ttft_ms > idle.ttft_ms + 2000
    assert busy.tpot_ms > idle.tpot_ms


def test_chunked_prefill_pays_a_decode_step_per_chunk():
    running = dict(in_flight=8, running=8, prefilling=1, prefill_tokens=4000)
    whole = LatencyPredictor().predict(_pool(CHEAP, **running), TIGHT, 9, CHEAP.lookup(16, 600))
    chunked = LatencyPredictor().predict(_pool(CHEAP, prefill_chunk=512, **running), TIGHT, 9,
                                         CHEAP.lookup(16, 600))
    assert chunked.ttft_ms > whole.ttft_ms


def test_prefills_of_recent_arrivals_stretch_the_tpot():
    quiet = LatencyPredictor().predict(_pool(CHEAP), TIGHT, 1, CHEAP.lookup(1, 600))
    busy = LatencyPredictor().predict(_pool(CHEAP, prompt_rate=2500.0), TIGHT, 1, CHEAP.lookup(1, 600))
    # 2500 prompt tokens/s × 0.2 ms each: the replica prefills half the time
    assert busy.tpot_ms == pytest.approx(quiet.tpot_ms * 2)


def test_the_target_tracker_follows_what_is_in_flight():
    targets = TargetTracker()
    targets.add(None, 2)  # routed with no promise: nothing to keep
    assert targets.tightest() is None
    targets.add(150.0)
    targets.add(30.0, 2)
    assert targets.tightest() == 30.0
    targets.remove(30.0, 2)
    assert targets.tightest() == 150.0
    targets.remove(99.0)  # never added: nothing changes
    targets.remove(150.0)
    assert targets.tightest() is None


def test_residual_correction_converges_to_the_observed_ratio_and_stays_bounded():
    pred = LatencyPredictor(alpha=0.2, max_factor=4.0)
    p = pred.predict(_pool(CHEAP), TIGHT, 1, CHEAP.lookup(1, 600))
    for _ in range(60):
        pred.observe("cheap", p, ttft_ms=2 * p.ttft_raw_ms, tpot_ms=0.5 * p.tpot_raw_ms)
    ttft_f, tpot_f = pred.factors("cheap")
    assert ttft_f == pytest.approx(2.0, rel=0.01) and tpot_f == pytest.approx(0.5, rel=0.01)
    again = pred.predict(_pool(CHEAP), TIGHT, 1, CHEAP.lookup(1, 600))
    assert again.ttft_ms == pytest.approx(2 * again.ttft_raw_ms, rel=0.01)
    assert pred.factors("pricey") == (1.0, 1.0)  # per pool
    for _ in range(60):
        pred.observe("cheap", p, ttft_ms=100 * p.ttft_raw_ms, tpot_ms=None)
    assert pred.factors("cheap")[0] == pytest.approx(4.0, rel=1e-4)


def test_marginal_energy_of_joining_an_idle_pool_is_the_whole_request_a_busy_one_the_slope():
    seq = 600
    idle = marginal_energy(CHEAP, 0, 1, 100, 100.0, seq)
    busy = marginal_energy(CHEAP, 32, 1, 100, 100.0, seq)
    assert idle == pytest.approx(1.0 + 0.02)  # E(1): base + slope, per token
    tail = 100 - 100 * 32 / 33  # steps it outlives the longest of 32 running sequences
    assert busy == pytest.approx((0.02 * (100 - tail) + 1.02 * tail) / 100)  # the slope, and the tail alone
    assert busy < idle / 10
    # a long request in a batch about to drain keeps the replica busy alone: most of its base
    long = marginal_energy(CHEAP, 2, 1, 1000, 100.0, seq)
    assert long > 0.9 * idle
    # the request's own prefill, at the replica's dynamic power, is charged to its tokens
    assert marginal_energy(CHEAP, 32, 1, 100, 100.0, seq, prefill_j=50.0) == pytest.approx(busy + 0.5)


def test_busy_pool_beats_idle_pool_on_marginal_energy():
    busy = _pool(PRICEY, in_flight=32, running=32, decode_tokens=32 * 100)
    d = _router("slo-marginal-energy").choose(RequestShape(MODEL, 500, 100), [_pool(CHEAP), busy])
    assert d.best.name == "pricey"
    assert d.best.prediction.marginal_j_per_token < d.ranked[1].prediction.marginal_j_per_token
    assert "J/tok marginal" in d.reason


def test_when_no_pool_meets_the_slo_the_best_predicted_outcome_wins():
    shape = RequestShape(MODEL, 500, 100, slo_ttft_ms=10, slo_tpot_ms=5)
    d = _router().choose(shape, [_pool(CHEAP), _pool(PRICEY)])
    assert d.policy == "best-outcome" and d.best.name == "pricey"
    assert "no pool meets predicted SLO" in d.reason


def test_headroom_keeps_relaxed_traffic_from_crowding_the_fast_pool():
    # routing.slo makes ttft ≤ 500 / tpot ≤ 50 the tight class; the fast pool at 96 running is near its limit
    cfg = {"slo": {"ttft_ms": 500, "tpot_ms": 50}}
    fast = _profile("fast", step_ms=20.0, prefill_ms_per_tok=0.05, base_j=1.0, slope_j=0.01)
    slow = _profile("slow", step_ms=60.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
    pools = [_pool(fast, capacity=256, in_flight=96, running=96, decode_tokens=96 * 100), _pool(slow)]
    relaxed = RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=200)
    d = _router(**cfg).choose(relaxed, pools)
    assert d.best.name == "slow" and d.dropped[0].why.startswith("headroom")
    assert _router(**cfg).choose(TIGHT, pools).best.name == "fast"
    # without headroom (a custom profile without it) the relaxed request takes the fast pool
    plain = {"policy": "x", "plugins": [{"type": "predicted-slo"}, {"type": "marginal-energy"}],
             "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "predicted-slo"},
                                                              {"pluginRef": "marginal-energy"}]},
                                    {"name": "b", "plugins": [{"pluginRef": "marginal-energy"}]}]}
    assert _router(**plain, **cfg).choose(relaxed, pools).best.name == "fast"


def test_a_relaxed_request_may_not_slow_a_batch_past_a_running_tight_target():
    fast = _profile("fast", step_ms=20.0, prefill_ms_per_tok=0.05, base_j=1.0, slope_j=0.01)
    slow = _profile("slow", step_ms=60.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
    relaxed = RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=200)
    running = dict(capacity=256, in_flight=32, running=32, decode_tokens=32 * 100)  # joining: 40 ms a step (b 64)

    def pools(held):
        return [_pool(fast, tightest_tpot_ms=held, **running), _pool(slow)]

    # the fast pool packs cheapest: it takes the relaxed request while nothing tight runs there
    assert _router().choose(relaxed, pools(None)).best.name == "fast"
    assert _router().choose(relaxed, pools(50.0)).best.name == "fast"  # 40 ≤ 0.9 × 50
    d = _router().choose(relaxed, pools(40.0))  # a running request needs ≤ 40 ms: 40 > 36
    assert d.best.name == "slow"
    assert d.dropped[0].name == "fast" and "a running sequence needs" in d.dropped[0].why
    off = {"policy": "x", "plugins": [{"type": "predicted-slo", "parameters": {"protect_in_flight": False}},
                                      {"type": "packed-energy"}],
           "schedulingProfiles": [{"name": "a", "plugins": [{"pluginRef": "predicted-slo"},
                                                            {"pluginRef": "packed-energy"}]},
                                  {"name": "b", "plugins": [{"pluginRef": "packed-energy"}]}]}
    assert _router(**off).choose(relaxed, pools(40.0)).best.name == "fast"


def test_a_batch_late_with_or_without_the_request_still_takes_a_short_prompt_but_not_a_long_one():
    fast = _profile("fast", step_ms=20.0, prefill_ms_per_tok=0.05, base_j=1.0, slope_j=0.01)
    slow = _profile("slow", step_ms=60.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
    # 10,000 prompt tokens/s arrive at the fast pool: prefills take half its time, every step is stretched
    # 2x, so its 32 running sequences are forecast at 60 ms without the request (80 with it), past the 36 ms
    # a running sequence was promised (0.9 x 40) either way.
    burst = dict(capacity=256, in_flight=32, running=32, decode_tokens=32 * 100, prompt_rate=10_000.0,
                 tightest_tpot_ms=40.0)
    short = RequestShape(MODEL, 100, 100, slo_ttft_ms=5000, slo_tpot_ms=200)  # prefill 5 ms
    long = RequestShape(MODEL, 2000, 100, slo_ttft_ms=5000, slo_tpot_ms=200)  # prefill 100 ms
    pred = _router().choose(short, [_pool(fast, **burst)]).best.prediction
    assert pred.tpot_ms == pytest.approx(80.0) and pred.tpot_without_ms == pytest.approx(60.0)
    assert pred.own_prefill_ms == pytest.approx(5.0)
    # keeping the short one off would not bring the running sequences back under 36 ms: it packs the fast pool
    assert _router().choose(short, [_pool(fast, **burst), _pool(slow)]).best.name == "fast"
    # the long one's prefill stalls every running sequence by more than a step at the promised pace
    d = _router().choose(long, [_pool(fast, **burst), _pool(slow)])
    assert d.best.name == "slow"
    assert d.dropped[0].why == "slo: prefill 100 ms > 36.0 ms a running sequence needs"


def test_a_decision_promises_the_tpot_its_filter_checked_and_the_fallback_promises_none():
    assert _router().choose(TIGHT, [_pool(CHEAP), _pool(PRICEY)]).promised_tpot_ms == 50
    no_header = RequestShape(MODEL, 500, 100)
    assert _router(slo={"tpot_ms": 80}).choose(no_header, [_pool(CHEAP)]).promised_tpot_ms == 80
    assert _router().choose(no_header, [_pool(CHEAP)]).promised_tpot_ms is None  # no target at all
    out_of_reach = RequestShape(MODEL, 500, 100, slo_ttft_ms=10, slo_tpot_ms=5)
    d = _router().choose(out_of_reach, [_pool(CHEAP), _pool(PRICEY)])
    assert d.policy == "best-outcome" and d.promised_tpot_ms is None  # a running 5 ms target blocks nobody
    assert _router("least-load").choose(TIGHT, [_pool(CHEAP)]).promised_tpot_ms is None


def test_when_every_pool_breaks_something_the_fallback_spares_running_promises():
    fast = _profile("fast", step_ms=20.0, prefill_ms_per_tok=0.05, base_j=1.0, slope_j=0.01)
    slow = _profile("slow", step_ms=60.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
    running = dict(capacity=256, in_flight=32, running=32, decode_tokens=32 * 100)  # 40 ms a step joining
    # the request's own 35 ms TPOT is out of reach everywhere (fast 40 ms, slow 120 ms): best-outcome ranks
    shape = RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=35)
    free = _router().choose(shape, [_pool(fast, **running), _pool(slow, in_flight=60, running=60,
                                                                  decode_tokens=6000)])
    assert free.policy == "best-outcome" and free.best.name == "fast"  # 40/35 beats 120/35
    # a sequence promised 10 ms runs on the fast pool: joining it breaks that one 4 times over
    held = _router().choose(shape, [_pool(fast, tightest_tpot_ms=10.0, **running),
                                    _pool(slow, in_flight=60, running=60, decode_tokens=6000)])
    assert held.policy == "best-outcome" and held.best.name == "slow"


def test_a_pool_without_a_forecast_is_kept_for_a_request_without_targets_whatever_it_runs():
    unprofiled = PoolState("bare", "h100", (MODEL,), capacity=8, tightest_tpot_ms=20.0)
    d = _router().choose(RequestShape(MODEL, 500, 100), [unprofiled])
    assert d.best.name == "bare" and d.policy == "slo-energy"


def test_slo_cost_ranks_by_price_over_packed_throughput():
    d = _router("slo-cost").choose(RequestShape(MODEL, 500, 100),
                                   [_pool(CHEAP, price_per_hour=4.0), _pool(PRICEY, price_per_hour=1.0)])
    assert d.best.name == "pricey"  # half the step time at a quarter of the price
    assert d.best.scores["packed-cost"] == 1.0 and d.ranked[1].scores["packed-cost"] == pytest.approx(1 / 8)
    assert d.best.prediction.marginal_cost_per_mtok < d.ranked[1].prediction.marginal_cost_per_mtok


def test_rate_meter_decays_with_the_injected_clock():
    m = RateMeter(tau_s=10.0)
    m.add(1000, now=0.0)
    assert m.rate(0.0) == pytest.approx(100.0)
    assert m.rate(10.0) == pytest.approx(100.0 / math.e)
    m.add(1000, now=10.0)
    assert m.rate(10.0) == pytest.approx(100.0 / math.e + 100.0)


def test_replicas_of_one_pool_are_ranked_each_so_a_tight_promise_pins_only_its_own_replica():
    fast = _profile("fast", step_ms=20.0, prefill_ms_per_tok=0.05, base_j=1.0, slope_j=0.01)
    slow = _profile("slow", step_ms=60.0, prefill_ms_per_tok=0.2, base_j=1.0, slope_j=0.02)
    relaxed = RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=200)
    busy = dict(capacity=256, in_flight=32, running=32, decode_tokens=32 * 100)  # joining: 40 ms a step
    # Seen as one pool (the load spread over both replicas, the tightest promise of either), a sequence
    # promised 40 ms on one replica keeps the relaxed request off the whole fast pool.
    whole = _pool(fast, replicas=2, capacity=512, in_flight=64, running=64, decode_tokens=6400,
                  tightest_tpot_ms=40.0)
    assert _router().choose(relaxed, [whole, _pool(slow)]).best.name == "slow"
    # Seen per replica, only the replica running the tight sequence is off limits: the other packs.
    held = _pool(fast, tightest_tpot_ms=40.0, replica="a", **busy)
    free = _pool(fast, replica="b", **busy)
    d = _router().choose(relaxed, [held, free, _pool(slow)])
    assert (d.best.name, d.best.replica) == ("fast", "b")
    assert d.dropped[0].label == "fast[a]" and "a running sequence needs" in d.dropped[0].why
    assert d.reason.startswith("fast[b]: ") and "skipped fast[a] (" in d.reason


def test_replicas_of_one_pool_tie_on_packed_energy_and_the_one_without_a_waiting_prefill_wins():
    relaxed = RequestShape(MODEL, 500, 100, slo_ttft_ms=5000, slo_tpot_ms=200)
    busy = dict(capacity=256, in_flight=8, running=8, decode_tokens=800)
    first, second = _pool(CHEAP, replica="a", **busy), _pool(CHEAP, replica="b", capacity=256)
    assert _router().choose(relaxed, [first, second]).best.replica == "a"  # none waits: the first packs
    waiting = _pool(CHEAP, replica="a", prefilling=1, prefill_tokens=4000, **{**busy, "in_flight": 9})
    d = _router().choose(relaxed, [waiting, second])
    assert d.best.replica == "b" and d.best.scores["prefill-queue"] == 1.0
    other = _pool(PRICEY, replica="c", capacity=256)
    assert _router().choose(relaxed, [waiting, other]).best.pool.name == "cheap"  # it breaks ties only
