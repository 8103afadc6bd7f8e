"""The virtual-time continuous batcher."""

from __future__ import annotations

import random

import pytest

from workers.emulation import ContinuousBatcher, Sequence
from workers.errors import ContextLengthExceeded, InvalidRequest
from workers.hardware import HardwareModel, decode_cost, get_hardware, get_model, prefill_cost

LLAMA = get_model("llama-3.1-8b")
H100 = get_hardware("h100")
RNGD = get_hardware("rngd")


def drain(batcher: ContinuousBatcher) -> list:
    steps = []
    while (step := batcher.step()) is not None:
        steps.append(step)
    return steps


def test_idle_batcher_has_no_step():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8)
    assert batcher.step() is None
    assert not batcher.has_work()


def test_one_sequence_prefills_then_decodes_one_token_per_step():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8)
    batcher.add(Sequence("a", prompt_tokens=100, max_new_tokens=3))
    steps = drain(batcher)
    assert len(steps) == 3
    assert steps[0].first_token_ids == ("a",)
    assert steps[0].duration_s == pytest.approx(prefill_cost(H100, LLAMA, [100]).duration_s)
    assert steps[1].first_token_ids == () and steps[1].token_ids == ("a",)
    # second decode step attends over prompt + 2 tokens already produced
    assert steps[2].duration_s == pytest.approx(decode_cost(H100, LLAMA, 1, 102).duration_s)
    assert [s.finished_ids for s in steps] == [(), (), ("a",)]


def test_a_single_new_token_finishes_in_the_admitting_step():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8)
    batcher.add(Sequence("a", 10, 1))
    (step,) = drain(batcher)
    assert step.first_token_ids == step.finished_ids == ("a",)


def test_admission_respects_max_batch():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=2)
    for i in range(5):
        batcher.add(Sequence(i, 10, 4))
    step = batcher.step()
    assert step.first_token_ids == (0, 1)
    assert (batcher.running, batcher.waiting) == (2, 3)


def test_admission_respects_kv_capacity():
    # 24 GB x 0.9 - 16.06 GB of weights leaves ~42.3k KV tokens: two 20k sequences.
    small = HardwareModel(
        name="small", kind="gpu", vendor="test", bf16_tflops=100, memory_gb=24,
        bandwidth_gbps=1000, idle_watts=10, peak_watts=100, mfu=0.5, mbu=0.8,
        price_per_hour_usd=1.0,
    )
    batcher = ContinuousBatcher(small, LLAMA, max_batch=8)
    for i in range(3):
        batcher.add(Sequence(i, 19_000, 1_000))
    batcher.step()
    assert (batcher.running, batcher.waiting) == (2, 1)
    assert 0.9 < batcher.kv_usage <= 1.0


def test_static_shapes_report_the_padded_batch():
    batcher = ContinuousBatcher(RNGD, LLAMA, max_batch=64)
    for i in range(9):
        batcher.add(Sequence(i, 100, 5))
    step = batcher.step()
    assert (step.batch_size, step.padded_batch) == (9, 16)


@pytest.mark.parametrize(("hw", "same_cost"), [(RNGD, True), (H100, False)])
def test_nine_sequences_cost_sixteen_only_on_static_shapes(hw, same_cost):
    def second_step(n: int) -> float:
        batcher = ContinuousBatcher(hw, LLAMA, max_batch=64)
        for i in range(n):
            batcher.add(Sequence(i, 100, 5))
        batcher.step()  # prefill
        return batcher.step().duration_s

    assert (second_step(9) == second_step(16)) is same_cost


def test_too_long_for_the_compiled_limit_is_rejected_at_add():
    atom = ContinuousBatcher(get_hardware("atom"), LLAMA, max_batch=8)
    with pytest.raises(ContextLengthExceeded, match="8192"):
        atom.add(Sequence("long", 8000, 500))
    ContinuousBatcher(H100, LLAMA, max_batch=8).add(Sequence("long", 8000, 500))


def test_max_model_len_tightens_the_limit():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8, max_model_len=1024)
    assert batcher.max_model_len == 1024
    with pytest.raises(ContextLengthExceeded):
        batcher.add(Sequence("a", 1000, 25))


def test_bad_sequences_and_duplicates_are_rejected():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8)
    with pytest.raises(InvalidRequest):
        batcher.add(Sequence("a", 0, 5))
    batcher.add(Sequence("a", 5, 5))
    with pytest.raises(InvalidRequest, match="already"):
        batcher.add(Sequence("a", 5, 5))


def test_max_batch_beyond_the_largest_bucket_is_a_config_error():
    with pytest.raises(ValueError, match="128"):
        ContinuousBatcher(RNGD, LLAMA, max_batch=256)


def test_removing_a_running_sequence_stops_it_and_frees_kv():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8)
    batcher.add(Sequence("keep", 100, 10))
    batcher.add(Sequence("drop", 100, 10))
    batcher.step()
    usage = batcher.kv_usage
    assert batcher.remove("drop")
    assert batcher.kv_usage == pytest.approx(usage / 2)
    rest = drain(batcher)
    assert all("drop" not in s.token_ids for s in rest)
    assert rest[-1].finished_ids == ("keep",)
    assert not batcher.remove("drop")


def test_removing_a_waiting_sequence():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=1)
    batcher.add(Sequence("first", 10, 3))
    batcher.add(Sequence("second", 10, 3))
    assert batcher.remove("second")
    assert sum(len(s.token_ids) for s in drain(batcher)) == 3


def test_energy_splits_into_idle_and_attributed():
    batcher = ContinuousBatcher(H100, LLAMA, max_batch=8)
    batcher.add(Sequence("a", 500, 2))
    for step in drain(batcher):
        idle = H100.idle_watts_replica * step.duration_s
        assert step.attributed_energy_j > 0
        assert step.energy_j == pytest.approx(idle + step.attributed_energy_j)
        assert step.energy_j <= H100.peak_watts_replica * step.duration_s


@pytest.mark.parametrize("hw", [H100, RNGD])
def test_every_sequence_gets_exactly_its_tokens(hw):
    rng = random.Random(7)
    batcher = ContinuousBatcher(hw, LLAMA, max_batch=32)
    wanted = {}
    for i in range(200):
        wanted[i] = rng.randint(1, 60)
        batcher.add(Sequence(i, rng.randint(1, 3000), wanted[i]))
    got = dict.fromkeys(wanted, 0)
    finished = []
    for step in drain(batcher):
        assert step.batch_size <= 32
        for seq_id in step.token_ids:
            got[seq_id] += 1
        finished += step.finished_ids
    assert got == wanted
    assert sorted(finished) == sorted(wanted)
    assert batcher.kv_usage == 0 and batcher.running == 0
