"""FuriosaEngine against furiosa-llm 2026.4.0's real frontend (probe in .venv-furiosa)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.contracts


@pytest.fixture(scope="module")
def found(probe):
    return probe("furiosa_llm", "furiosa")


@pytest.fixture(scope="module")
def surface(found):
    return found["surface"]


@pytest.fixture(scope="module")
def behaviour(found):
    assert "error" not in found["behaviour"], found["behaviour"]["error"]
    return found["behaviour"]


def test_version_checked(found):
    assert found["versions"]["furiosa-llm"] == "2026.4.0"


def test_engine_args_take_model_devices_and_tokenizer_but_no_seed(surface):
    assert {"model", "devices", "tokenizer", "fxb"} <= set(surface["AsyncEngineArgs.fields"])
    assert "seed" not in surface["AsyncEngineArgs.fields"]


def test_engine_interface(surface):
    assert list(surface["AsyncLLMEngine.from_engine_args"]) == ["args"]
    assert list(surface["AsyncLLMEngine.generate"]) == ["self", "prompt", "sampling_params", "request_id"]
    assert surface["AsyncLLMEngine.generate.kind"] == "asyncgen"
    assert list(surface["AsyncLLMEngine.abort"]) == ["self", "request_id"]
    assert surface["AsyncLLMEngine.abort.kind"] == "coroutine"
    # Set in __init__, read by the adapter: the tokenizer and the context length.
    assert {"tokenizer", "max_model_len"} <= set(surface["AsyncLLMEngine.__init__"])


def test_sampling_params_are_keyword_only_and_have_no_seed(surface):
    sampling = surface["SamplingParams"]
    used = {"n", "temperature", "top_p", "max_tokens", "stop", "ignore_eos", "output_kind"}
    assert used <= set(sampling)
    assert {sampling[name]["kind"] for name in used} == {"KEYWORD_ONLY"}
    assert "seed" not in sampling
    assert "DELTA" in surface["RequestOutputKind"]


def test_outputs_carry_what_the_adapter_reads(surface):
    assert {"outputs", "finished"} <= set(surface["RequestOutput"])
    assert {"text", "token_ids", "finish_reason"} <= set(surface["CompletionOutput"])


def test_start_passes_engine_args_and_rejects_unknown_ones(behaviour):
    assert behaviour["built_with"] == {"model_id_or_path": "/models/m", "devices": "npu:0", "tokenizer": "/models/tok"}
    assert behaviour["max_model_len"] == 64
    for name in ("start_bad_arg", "start_seed_arg"):
        assert behaviour[name]["type"] == "workers.errors.EngineStartError"
    assert "'seed'" in behaviour["start_seed_arg"]["message"]


def test_deltas_hold_new_text_and_cumulative_tokens(behaviour):
    assert behaviour["length"]["deltas"] == [["the", 1, None], [" quick", 2, None], [" brown", 3, "length"]]
    # The engine got our token ids (BOS added for a raw prompt) and max_tokens.
    call = behaviour["length_native_call"]
    assert call["max_tokens"] == 3 and len(call["prompt_token_ids"]) == 3
    eos = behaviour["eos"]["deltas"]
    assert eos[-1] == [" dog", 9, "stop"]


def test_stop_string_is_cut_from_the_text_and_its_token_counted(behaviour):
    deltas = behaviour["stop_string"]["deltas"]
    assert "".join(text for text, _, _ in deltas) == "the quick brown "
    assert deltas[-1][1:] == [4, "stop"]


def test_closing_the_stream_aborts_the_engine_request(behaviour):
    assert "r4" in behaviour["closed_early"]["native_aborted"]
    assert behaviour["closed_early"]["engine_request_ids"] == []
    assert behaviour["stats"]["running"] == 0
    assert behaviour["stats"]["finished"] == 3  # r1 to r3; the closed r4 did not finish


def test_bad_requests_are_typed_errors_before_the_engine(behaviour):
    assert behaviour["too_long"]["error"]["type"] == "workers.errors.ContextLengthExceeded"
    assert behaviour["seed"]["error"]["type"] == "workers.errors.InvalidRequest"
    assert behaviour["top_p_zero"]["error"]["type"] == "workers.errors.InvalidRequest"


def test_chat_template_and_bos_handling(behaviour):
    chat = behaviour["chat"]
    assert chat["text"].startswith("<s>")
    assert chat["tokens"] == len(chat["text"].split())  # rendered BOS kept, none added
    assert chat["raw_tokens"] == 3  # BOS added to a raw prompt
