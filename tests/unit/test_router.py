"""Router: guards, spill-over, typed errors, the batch a request joins, reasons."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from routing import (
    AllPoolsSaturated,
    Cell,
    EfficiencyProfile,
    ModelNotServed,
    NoFeasiblePool,
    NoHealthyPool,
    PoolState,
    RequestShape,
    build_policy,
)
from routing.framework import Router, join_batch

MODEL = "llama-8b"


def _grid(pool, hardware, j_small, j_large, seq_max, *, tpot=20.0, ttft=100.0):
    """J/token j_small at batch ≤ 4 and j_large above, up to seq_max."""
    cells = [
        Cell(b, s, j_per_token=j_small if b <= 4 else j_large, ttft_ms=ttft, tpot_ms=tpot,
             samples=37, provenance="calibrated")
        for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)
        for s in (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
        if s <= seq_max
    ]
    return EfficiencyProfile(pool, hardware, MODEL, cells=cells)


def _fleet(npu_load=0, gpu_load=0, npu_capacity=32, gpu_capacity=256):
    npu = PoolState("rngd-a", "furiosa-rngd", (MODEL,), running=npu_load, capacity=npu_capacity,
                    max_seq_len=8192, batch_buckets=(1, 2, 4, 8, 16, 32),
                    profile=_grid("rngd-a", "furiosa-rngd", 0.41, 0.9, 8192))
    gpu = PoolState("h100", "nvidia-h100", (MODEL,), running=gpu_load, capacity=gpu_capacity,
                    profile=_grid("h100", "nvidia-h100", 0.62, 0.2, 32768))
    return [gpu, npu]


def _router(policy="efficiency", clock=lambda: 12.5):
    return Router(build_policy(policy), clock=clock)


def test_short_prompt_goes_to_the_more_efficient_npu():
    d = _router().choose(RequestShape(MODEL, 300, 200), _fleet())
    assert [r.name for r in d.ranked] == ["rngd-a", "h100"]
    assert d.best.cell.j_per_token == 0.41 and d.best.cell.seq_len == 512
    assert d.best.scores == {"efficiency": 1.0}
    assert d.ranked[1].score == pytest.approx(0.41 / 0.62)
    assert d.reason == "rngd-a: 0.41 J/tok at batch 1×seq 512 (calibrated, n=37); h100: 0.62 J/tok"
    assert d.at == 12.5 and d.policy == "efficiency"


def test_long_prompt_past_npu_compiled_length_goes_to_gpu():
    d = _router().choose(RequestShape(MODEL, 9000, 500), _fleet())
    assert [r.name for r in d.ranked] == ["h100"]
    assert "skipped rngd-a (too long)" in d.reason


def test_infeasible_profile_cell_excludes_pool_even_within_max_seq_len():
    fleet = _fleet()
    fleet[1].profile.put(Cell(1, 1024, feasible=False))
    d = _router().choose(RequestShape(MODEL, 600, 100), fleet)
    assert [r.name for r in d.ranked] == ["h100"]


def test_busy_gpu_becomes_more_efficient_than_npu():
    # the GPU's cell at its joined batch (40 + 1 -> 64) beats the NPU's small batch
    d = _router().choose(RequestShape(MODEL, 300, 200), _fleet(gpu_load=40))
    assert d.best.name == "h100" and d.best.batch == 41 and d.best.cell.batch == 64


def test_npu_batch_rounds_up_to_its_static_bucket():
    npu = _fleet(npu_load=8)[1]
    assert join_batch(npu, 1) == 16  # 9 sequences pay for the 16 bucket
    two = PoolState("g", "gpu", (MODEL,), running=9, replicas=2, capacity=64)
    assert join_batch(two, 3) == 5 + 3  # one replica's share plus the request


def test_spill_over_when_preferred_pool_is_saturated():
    d = _router().choose(RequestShape(MODEL, 300, 200), _fleet(npu_load=32))
    assert [r.name for r in d.ranked] == ["h100"]
    assert "skipped rngd-a (saturated)" in d.reason


def test_saturation_fraction_counts_a_pool_full_early():
    shape = RequestShape(MODEL, 300, 200)
    assert len(_router().choose(shape, _fleet(npu_load=24)).ranked) == 2
    early = Router(build_policy("efficiency"), saturation=0.75)
    d = early.choose(shape, _fleet(npu_load=24))
    assert [r.name for r in d.ranked] == ["h100"] and "rngd-a (saturated)" in d.reason


def test_all_pools_saturated_raises_with_retry_after():
    router = Router(build_policy("efficiency"), retry_after_s=2.5)
    unprofiled = [replace(p, profile=None) for p in _fleet(npu_load=32, gpu_load=256)]
    with pytest.raises(AllPoolsSaturated) as e:
        router.choose(RequestShape(MODEL, 300, 200), unprofiled)
    assert e.value.retry_after_s == 2.5  # no profile to predict a wait from: the configured one
    again = pickle.loads(pickle.dumps(e.value))
    assert again.retry_after_s == 2.5 and str(again) == str(e.value)


def test_retry_after_is_the_shortest_predicted_wait():
    # A request takes TTFT 100 ms + 200 × TPOT 20 ms = 4.1 s; a pool frees capacity / 4.1 s slots per second.
    router = Router(build_policy("efficiency"), retry_after_s=2.5)
    with pytest.raises(AllPoolsSaturated) as e:
        router.choose(RequestShape(MODEL, 300, 200), _fleet(npu_load=32 + 63, gpu_load=256 + 255))
    # rngd-a: 64 over its 32 → 64 × 4.1 / 32 = 8.2 s; h100: 256 over its 256 → 256 × 4.1 / 256 = 4.1 s
    assert e.value.retry_after_s == pytest.approx(4.1)


def test_model_not_served_lists_available_models():
    with pytest.raises(ModelNotServed) as e:
        _router().choose(RequestShape("gpt-9", 10, 10), _fleet())
    assert e.value.available == (MODEL,)


def test_no_feasible_pool():
    with pytest.raises(NoFeasiblePool) as e:
        _router().choose(RequestShape(MODEL, 40_000, 100), _fleet())
    assert e.value.seq_len == 40_100


def test_no_healthy_pool():
    fleet = [PoolState("h100", "nvidia-h100", (MODEL,), healthy=False, capacity=8)]
    with pytest.raises(NoHealthyPool):
        _router().choose(RequestShape(MODEL, 10, 10), fleet)


def test_unhealthy_pool_is_skipped():
    gpu, npu = _fleet()
    sick = PoolState(npu.name, npu.hardware, npu.models, healthy=False, capacity=32, profile=npu.profile)
    d = _router().choose(RequestShape(MODEL, 300, 200), [gpu, sick])
    assert d.best.name == "h100" and "rngd-a (unhealthy)" in d.reason


def test_pool_without_profile_gets_neutral_score_and_says_so():
    gpu, npu = _fleet()
    bare = PoolState("cpu", "xeon", (MODEL,), capacity=4)
    d = _router().choose(RequestShape(MODEL, 300, 200), [bare, gpu, npu])
    cpu = next(r for r in d.ranked if r.name == "cpu")
    assert cpu.cell is None and cpu.scores["efficiency"] == 0.5
    assert "cpu: no profile" in d.reason


def test_profile_for_another_model_is_not_used():
    gpu, npu = _fleet()
    other = PoolState("rngd-b", "furiosa-rngd", (MODEL,), capacity=32,
                      profile=EfficiencyProfile("rngd-b", "furiosa-rngd", "qwen",
                                                cells=[Cell(1, 512, j_per_token=0.01)]))
    d = _router().choose(RequestShape(MODEL, 300, 200), [other, gpu, npu])
    assert d.best.name == "rngd-a" and d.ranked[-1].name == "rngd-b"


def test_last_profile_must_be_unfiltered():
    first, _ = build_policy("slo-efficiency")
    with pytest.raises(ValueError, match="fallback"):
        Router([first])


def _guarded(run, shape, pools):
    """What ``run`` (a router's ``_screen`` or ``_guard``) keeps and drops, or the error it raises."""
    from routing.framework import candidate

    try:
        dropped = []
        kept = run(shape, [candidate(p, shape) for p in pools], dropped)
        return [c.pool.name for c in kept], [(d.name, d.why) for d in dropped]
    except Exception as exc:  # noqa: BLE001 - compared by type and message
        return type(exc).__name__, str(exc)


def test_one_pass_screen_agrees_with_the_guards_one_by_one():
    """The router's hot path checks every guard in one pass; it must keep, drop
    (with the same reasons, in the same order) and refuse exactly as the guards do."""
    import random

    rng = random.Random(7)
    router = _router("least-load")
    for _ in range(400):
        pools = []
        for i in range(rng.randrange(1, 6)):
            pools.append(PoolState(
                f"p{i}", "nvidia-h100", (rng.choice((MODEL, "other")),), running=rng.randrange(0, 40),
                capacity=rng.choice((8, 32)), max_seq_len=rng.choice((2048, 8192)),
                healthy=rng.random() > 0.2, capabilities=frozenset(rng.sample(["logprobs", "tools"], rng.randrange(3))),
                replicas=rng.randrange(0, 4), batch_buckets=rng.choice(((), (1, 4, 16, 64))),
                profile=_grid(f"p{i}", "nvidia-h100", 0.5, 0.3, rng.choice((1024, 32768)))))
        shape = RequestShape(MODEL, rng.randrange(16, 4000), rng.randrange(1, 2000),
                             features=frozenset(rng.sample(["logprobs", "tools"], rng.randrange(2))))
        assert _guarded(router._screen, shape, pools) == _guarded(router._guard, shape, pools)
