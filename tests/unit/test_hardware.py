"""The hardware model: validation, catalog, roofline, and calibration checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.emulation import ContinuousBatcher, Sequence
from workers.hardware import (
    CatalogError,
    HardwareModel,
    decode_cost,
    get_hardware,
    get_model,
    hardware_keys,
    is_feasible,
    kv_capacity_tokens,
    max_sequence_tokens,
    model_keys,
    padded_batch,
    padded_seq,
    power_watts,
    prefill_cost,
)
from workers.hardware.roofline import MEMORY_FRACTION

LLAMA = "llama-3.1-8b"


def _hw(**overrides) -> HardwareModel:
    fields = dict(
        name="test chip", kind="gpu", vendor="test", bf16_tflops=100, memory_gb=24,
        bandwidth_gbps=1000, idle_watts=10, peak_watts=100, mfu=0.5, mbu=0.8,
        price_per_hour_usd=1.0,
    )
    return HardwareModel(**(fields | overrides))


def run_workload(hw_key: str, model_key: str, batch: int, prompt: int, output: int):
    """Serve ``batch`` identical sequences to completion; (tokens/s, J per output token)."""
    batcher = ContinuousBatcher(get_hardware(hw_key), get_model(model_key), max_batch=batch)
    for i in range(batch):
        batcher.add(Sequence(i, prompt, output))
    seconds = joules = 0.0
    while (step := batcher.step()) is not None:
        seconds += step.duration_s
        joules += step.energy_j
    return batch * output / seconds, joules / (batch * output)


# -- the pydantic models ---------------------------------------------------------


def test_model_spec_derives_weight_and_kv_bytes():
    llama = get_model(LLAMA)
    assert llama.weight_bytes == pytest.approx(16.06e9)
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert llama.kv_bytes_per_token == 131072
    assert get_model("llama-3.1-8b-fp8").kv_bytes_per_token == 65536


def test_unknown_field_is_named():
    with pytest.raises(ValidationError, match="tdp_watts"):
        _hw(tdp_watts=300)


def test_bad_buckets_name_their_key():
    with pytest.raises(ValidationError, match="batch_buckets"):
        _hw(batch_buckets=[8, 4])
    with pytest.raises(ValidationError, match="seq_buckets"):
        _hw(seq_buckets=[])


def test_peak_below_idle_is_rejected():
    with pytest.raises(ValidationError, match="peak_watts"):
        _hw(idle_watts=200, peak_watts=100)


def test_sources_must_cite_real_fields():
    with pytest.raises(ValidationError, match="bogus"):
        _hw(sources={"bogus": "somewhere"})


def test_replica_multiplies_chips():
    atom = get_hardware("atom")
    assert atom.devices == 4
    assert atom.memory_bytes == pytest.approx(64e9)
    assert atom.idle_watts_replica == pytest.approx(4 * 6.1)


def test_one_byte_weights_use_8bit_units():
    h100, atom = get_hardware("h100"), get_hardware("atom")
    assert h100.peak_flops(1) == pytest.approx(2 * h100.peak_flops(2), rel=0.01)
    assert atom.peak_flops(1) == pytest.approx(4 * atom.peak_flops(2))  # INT8 TOPS, no FP8


# -- the catalog ---------------------------------------------------------------


def test_catalog_has_the_required_entries():
    assert {"h100", "h200", "l40s", "a100", "rngd", "atom", "cpu"} <= set(hardware_keys())
    assert {"llama-3.1-8b", "tiny-llama"} <= set(model_keys())
    assert get_model("tiny-llama").hidden_size == 128
    assert get_model("tiny-llama").layers == 2


def test_unknown_key_names_it_and_lists_known():
    with pytest.raises(CatalogError, match=r"'tpu-v9'.*known: a100, atom"):
        get_hardware("tpu-v9")
    with pytest.raises(CatalogError, match=r"'gpt-9'.*llama-3.1-8b"):
        get_model("gpt-9")


@pytest.mark.parametrize("key", ["h100", "h200", "l40s", "a100", "rngd", "atom", "cpu"])
def test_every_headline_figure_is_sourced(key):
    hw = get_hardware(key)
    for figure in ("bf16_tflops", "memory_gb", "bandwidth_gbps", "peak_watts", "idle_watts"):
        assert hw.sources.get(figure, "").strip(), f"{key}.{figure} has no source"


def test_npus_are_static_gpus_dynamic():
    assert get_hardware("rngd").static_shapes and get_hardware("atom").static_shapes
    assert not get_hardware("h100").static_shapes
    assert get_hardware("atom").max_seq_len == 8192


# -- the roofline ----------------------------------------------------------------


def test_static_batch_pays_for_its_bucket():
    rngd, h100 = get_hardware("rngd"), get_hardware("h100")
    llama = get_model(LLAMA)
    assert padded_batch(rngd, 9) == 16
    assert padded_batch(h100, 9) == 9
    nine = decode_cost(rngd, llama, 9, 9 * 1000, 1000)
    sixteen = decode_cost(rngd, llama, 16, 16 * 1000, 1000)
    assert nine == sixteen
    dynamic_nine = decode_cost(h100, llama, 9, 9000)
    assert dynamic_nine.duration_s < decode_cost(h100, llama, 16, 16000).duration_s


def test_static_decode_pays_for_the_longest_contexts_bucket():
    rngd, llama = get_hardware("rngd"), get_model(LLAMA)
    assert padded_seq(rngd, 1025) == 2048
    short = decode_cost(rngd, llama, 4, 4 * 1025, 1025)
    mixed = decode_cost(rngd, llama, 4, 3 * 100 + 1025, 1025)  # same longest, shorter others
    assert short == mixed


def test_batch_beyond_the_largest_bucket_is_an_error():
    with pytest.raises(ValueError, match="128"):
        padded_batch(get_hardware("rngd"), 129)


def test_prompt_longer_than_the_compiled_max_cannot_run():
    atom, h100, llama = get_hardware("atom"), get_hardware("h100"), get_model(LLAMA)
    assert max_sequence_tokens(atom, llama) == 8192
    assert not is_feasible(atom, llama, 9000)
    assert is_feasible(h100, llama, 9000)


def test_kv_capacity_is_memory_left_after_weights():
    rngd, llama = get_hardware("rngd"), get_model(LLAMA)
    expected = (48e9 * MEMORY_FRACTION - llama.weight_bytes) // 131072
    assert kv_capacity_tokens(rngd, llama) == expected


def test_weights_that_do_not_fit_leave_nothing_feasible():
    small = _hw(memory_gb=8)
    assert kv_capacity_tokens(small, get_model(LLAMA)) == 0
    assert not is_feasible(small, get_model(LLAMA), 10)


def test_power_is_linear_between_idle_and_peak():
    h100 = get_hardware("h100")
    assert power_watts(h100, 0.0) == 70
    assert power_watts(h100, 1.0) == 700
    assert power_watts(h100, 0.5) == pytest.approx(385)
    assert power_watts(h100, 3.0) == 700  # clamped


def test_decode_at_batch_one_is_memory_bound():
    h100, llama = get_hardware("h100"), get_model(LLAMA)
    cost = decode_cost(h100, llama, 1, 100)
    memory_s = (llama.weight_bytes + 100 * 131072) / (3.35e12 * h100.mbu)
    assert cost.duration_s == pytest.approx(memory_s + h100.step_overhead_ms / 1e3)
    assert cost.utilisation < 0.7  # memory-bound steps draw well below peak


def test_prefill_is_compute_bound_and_grows_with_prompts():
    h100, llama = get_hardware("h100"), get_model(LLAMA)
    one = prefill_cost(h100, llama, [2048])
    compute_s = 2 * llama.params * 2048 / (989e12 * h100.mfu)
    assert one.duration_s > compute_s + h100.step_overhead_ms / 1e3  # plus attention
    assert one.duration_s < 1.1 * compute_s + h100.step_overhead_ms / 1e3
    assert prefill_cost(h100, llama, [2048] * 4).duration_s > 3.5 * (one.duration_s - 0.003)
    assert one.utilisation > 0.9


# -- calibration against published figures (docs/hardware.md) ----------------


def test_h100_batch_64_matches_ml_energy():
    # ML.ENERGY: Llama 3.1 8B on H100 at batch 64, 0.12 J (v3) to 0.20 J (v2) per
    # token; their chat task averages 717 output tokens.
    _, joules = run_workload("h100", LLAMA, 64, 1024, 717)
    assert 0.12 <= joules <= 0.20


@pytest.mark.parametrize(
    ("hw_key", "published"), [("h100", 13222), ("rngd", 3935), ("l40s", 2989)]
)
def test_furiosa_comparison_is_reproduced(hw_key, published):
    # FuriosaAI: Llama 3.1 8B FP8, 128 in / 4096 out, one card. The batch is as
    # many sequences as the KV cache holds whole (capped by the compiled buckets).
    hw, model = get_hardware(hw_key), get_model("llama-3.1-8b-fp8")
    batch = min(kv_capacity_tokens(hw, model) // (128 + 4096), (hw.batch_buckets or (256,))[-1])
    tokens_per_s, _ = run_workload(hw_key, "llama-3.1-8b-fp8", batch, 128, 4096)
    assert tokens_per_s == pytest.approx(published, rel=0.25)


@pytest.mark.parametrize("npu", ["rngd", "atom"])
def test_npu_wins_at_batch_one_gpu_wins_at_large_batch(npu):
    _, gpu_b1 = run_workload("h100", LLAMA, 1, 1024, 717)
    _, npu_b1 = run_workload(npu, LLAMA, 1, 1024, 717)
    assert npu_b1 < gpu_b1
    _, gpu_b64 = run_workload("h100", LLAMA, 64, 1024, 717)
    _, npu_b64 = run_workload(npu, LLAMA, 64, 1024, 717)
    assert gpu_b64 < npu_b64
