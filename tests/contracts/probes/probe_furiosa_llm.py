"""furiosa-llm's frontend as hetserve's FuriosaEngine uses it (run in .venv-furiosa).

Reports the signatures the adapter relies on, then drives the adapter through
the real ``AsyncEngineArgs``, ``AsyncLLMEngine.from_engine_args``,
``generate``, ``abort``, ``SamplingParams`` and output conversion. Only the
native NPU runtime is replaced: ``furiosa_llm.llm_engine.LLM`` becomes a stub
whose ``engine`` streams one scripted token per step, as the runtime's
``stream_generate`` does, and ends a stream once its request is aborted.
"""

from __future__ import annotations

import asyncio
import traceback
import types
from typing import Any

from _describe import emit, error, fields, kind, members, params, version

SCRIPT = "the quick brown fox jumps over the lazy dog"
MAX_MODEL_LEN = 64


def tiny_tokenizer():
    """A word-level fast tokenizer with ``<s>``/``</s>`` and a chat template, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted(set((SCRIPT + " hello there hi user assistant").split()))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"▁{w}": i + 3 for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = "<s>{% for m in messages %} {{ m['role'] }} {{ m['content'] }}{% endfor %} assistant"
    return tokenizer


class NativeEngine:
    """Stands in for furiosa-llm-native: one token of ``SCRIPT`` per output."""

    def __init__(self, tokenizer):
        self.ids = tokenizer.convert_tokens_to_ids([f"▁{w}" for w in SCRIPT.split()])
        self.calls: list[dict] = []
        self.aborted: list[str] = []

    async def stream_generate(self, inputs, sampling_params, request_id=None):
        self.calls.append({"prompt_token_ids": list(inputs.input_ids), "max_tokens": sampling_params.max_tokens,
                           "native_stop": sampling_params.stop})
        for i, token in enumerate(self.ids):
            await asyncio.sleep(0)
            if request_id in self.aborted:
                return
            last = i + 1 == sampling_params.max_tokens
            reason = "length" if last else ("stop" if i + 1 == len(self.ids) else None)
            output = types.SimpleNamespace(index=0, token_ids=[token], finish_reason=reason,
                                           logprobs=None, prompt_logprobs=None)
            yield types.SimpleNamespace(outputs=[output], num_cached_tokens=0, num_prompt_tokens=None)
            if reason:
                return

    def abort_request(self, request_id: str) -> None:
        self.aborted.append(request_id)


def stub_llm(tokenizer, built: list[dict]):
    class LLM:
        def __init__(self, **kwargs: Any):
            built.append({k: v for k, v in kwargs.items() if k in ("model_id_or_path", "devices", "tokenizer")})
            self.engine = NativeEngine(tokenizer)
            self.tokenizer = tokenizer
            self.max_model_len = MAX_MODEL_LEN
            self.mm_processor_kwargs = None
            self.model_metadata = types.SimpleNamespace(task="generate", trust_remote_code=False)

    return LLM


def surface() -> dict:
    import furiosa_llm
    from furiosa_llm import outputs

    engine = furiosa_llm.AsyncLLMEngine
    return {
        "AsyncEngineArgs.fields": fields(furiosa_llm.AsyncEngineArgs),
        "AsyncLLMEngine.from_engine_args": params(engine.from_engine_args),
        "AsyncLLMEngine.__init__": params(engine.__init__),
        "AsyncLLMEngine.generate": params(engine.generate),
        "AsyncLLMEngine.generate.kind": kind(engine.generate),
        "AsyncLLMEngine.abort": params(engine.abort),
        "AsyncLLMEngine.abort.kind": kind(engine.abort),
        "SamplingParams": params(furiosa_llm.SamplingParams),
        "RequestOutputKind": members(outputs.RequestOutputKind),
        "RequestOutput": params(outputs.RequestOutput),
        "CompletionOutput": params(outputs.CompletionOutput),
    }


async def collect(engine, request) -> dict:
    deltas = []
    try:
        async for d in engine.generate(request):
            deltas.append([d.text, d.output_tokens, d.finish_reason])
    except Exception as exc:
        return {"deltas": deltas, "error": error(exc)}
    return {"deltas": deltas}


async def behaviour() -> dict:
    import furiosa_llm.llm_engine

    from workers.engine import EngineRequest, SamplingParams
    from workers.furiosa_engine import FuriosaEngine

    tokenizer = tiny_tokenizer()
    built: list[dict] = []
    furiosa_llm.llm_engine.LLM = stub_llm(tokenizer, built)
    found: dict[str, Any] = {}

    for name, extra in {"start_bad_arg": {"bogus": 1}, "start_seed_arg": {"seed": 7}}.items():
        try:
            await FuriosaEngine("/models/m", devices="npu:0", **extra).start()
            found[name] = "started"
        except Exception as exc:
            found[name] = error(exc)

    adapter = FuriosaEngine("/models/m", devices="npu:0", tokenizer="/models/tok")
    await adapter.start()
    native = adapter._engine._llm.engine
    found["built_with"] = built[-1]
    found["max_model_len"] = adapter.max_model_len

    def request(request_id, prompt="hi", token_ids=None, **params):
        return EngineRequest(request_id, prompt=prompt, prompt_token_ids=token_ids, params=SamplingParams(**params))

    found["length"] = await collect(adapter, request("r1", "hello there", max_tokens=3))
    found["length_native_call"] = native.calls[-1]
    found["stop_string"] = await collect(adapter, request("r2", None, [1, 3], max_tokens=20, stop=["fox"]))
    found["eos"] = await collect(adapter, request("r3", max_tokens=20))

    stream = adapter.generate(request("r4", max_tokens=20))
    await stream.__anext__()
    await stream.aclose()
    found["closed_early"] = {"native_aborted": native.aborted,
                             "engine_request_ids": sorted(adapter._engine.request_ids)}

    found["too_long"] = await collect(adapter, request("r5", None, [1] * 10, max_tokens=MAX_MODEL_LEN))
    found["seed"] = await collect(adapter, request("r6", seed=3))
    found["top_p_zero"] = await collect(adapter, request("r7", top_p=0.0))

    chat = adapter.render_chat([{"role": "user", "content": "hello there"}])
    found["chat"] = {"text": chat, "tokens": adapter.count_tokens(chat),
                     "raw_tokens": adapter.count_tokens("hello there")}
    stats = adapter.stats()
    found["stats"] = {"running": stats.running, "finished": stats.requests_finished,
                      "output_tokens": stats.output_tokens_total}
    return found


def main() -> None:
    found: dict[str, Any] = {"versions": {d: version(d) for d in ("furiosa-llm", "transformers", "torch")}}
    found["surface"] = surface()
    try:
        found["behaviour"] = asyncio.run(behaviour())
    except Exception as exc:  # reported, so the test shows what broke
        found["behaviour"] = {"error": error(exc) | {"traceback": traceback.format_exc()}}
    emit(found)


if __name__ == "__main__":
    main()
