"""FuriosaAI RNGD pools through furiosa-llm's ``AsyncLLMEngine``.

furiosa-llm (FuriosaAI SDK) is imported in :meth:`FuriosaEngine.start`, so
this module imports anywhere. The engine is built with
``AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=..., devices=...))``
and streams ``RequestOutput`` objects from ``generate(prompt, params, id)``;
we ask for ``RequestOutputKind.DELTA``, so each output carries only new text
and token ids. ``abort(id)`` stops a request.

Prompts are tokenized here and sent as token ids. A text prompt gets the
tokenizer's special tokens unless it already starts with the BOS token (as a
rendered chat template does), so ``count_tokens`` matches what runs.

The context check mirrors the engine's own (prompt plus ``max_tokens`` within
``max_model_len``), so an over-long request fails as ``ContextLengthExceeded``
before it reaches the engine.

furiosa-llm (2026.4) takes no seed, neither per request nor as an engine
argument, and exposes no queue or KV-cache figures: ``stats()`` reports
running requests and token counters, with ``waiting`` and ``kv_cache_usage``
left at zero. Checked against the real package in tests/contracts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

from workers.engine import EngineAdapter, EngineDelta, EngineRequest, EngineStats, SamplingParams, fitted
from workers.errors import (
    ContextLengthExceeded,
    EngineFailure,
    EngineStartError,
    InvalidRequest,
)


class FuriosaEngine(EngineAdapter):
    """One furiosa-llm engine; ``engine_args`` go to ``AsyncEngineArgs`` (e.g. ``tokenizer``, ``fxb``)."""

    def __init__(self, model: str, *, devices: str | None = None, **engine_args):
        self._model = model
        self._devices = devices
        self._engine_args = engine_args
        self._engine = None
        self._stats = EngineStats()

    async def start(self) -> None:
        try:
            import furiosa_llm
            from furiosa_llm.outputs import RequestOutputKind
        except ImportError as exc:
            raise EngineStartError(
                f"the furiosa engine needs the 'furiosa-llm' package (FuriosaAI SDK): {exc}"
            ) from exc
        try:
            args = furiosa_llm.AsyncEngineArgs(model=self._model, devices=self._devices, **self._engine_args)
            engine = furiosa_llm.AsyncLLMEngine.from_engine_args(args)
        except Exception as exc:
            raise EngineStartError(
                f"furiosa-llm could not load {self._model!r} on devices {self._devices or 'auto'}: {exc}"
            ) from exc
        self._sampling_params_cls = furiosa_llm.SamplingParams
        self._delta_kind = RequestOutputKind.DELTA
        self._engine = engine

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        engine = self._started()
        prompt_ids = self._prompt_ids(request)
        params = self._sampling_params(request.params, len(prompt_ids))
        stream = engine.generate({"prompt_token_ids": prompt_ids}, params, request.request_id)
        self._stats.running += 1
        self._stats.prompt_tokens_total += len(prompt_ids)
        output_tokens = 0
        finish_reason = None
        exhausted = False
        try:
            async for output in stream:
                completion = output.outputs[0]
                output_tokens += len(completion.token_ids)
                self._stats.output_tokens_total += len(completion.token_ids)
                finish_reason = _finish_reason(completion.finish_reason)
                if finish_reason:
                    self._stats.requests_finished += 1
                if completion.text or finish_reason:
                    yield EngineDelta(completion.text, len(prompt_ids), output_tokens, finish_reason)
            exhausted = True
        except Exception as exc:
            raise EngineFailure(f"furiosa-llm failed on request {request.request_id}: {exc}") from exc
        finally:
            self._stats.running -= 1
            if not exhausted:  # cancelled, closed early or failed: free the engine's request
                await engine.abort(request.request_id)
                await stream.aclose()
        if finish_reason is None:
            raise EngineFailure(f"furiosa-llm ended request {request.request_id} without a finish reason")

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        tokenizer = self._started().tokenizer
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except ValueError as exc:  # no chat template, or malformed messages
            raise InvalidRequest(str(exc), param="messages") from exc

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    @property
    def max_model_len(self) -> int:
        return self._started().max_model_len

    def stats(self) -> EngineStats:
        return dataclasses.replace(self._stats)

    async def shutdown(self) -> None:
        self._engine = None

    def _started(self):
        if self._engine is None:
            raise EngineFailure("furiosa engine used before start()")
        return self._engine

    def _encode(self, text: str) -> list[int]:
        tokenizer = self._started().tokenizer
        bos = getattr(tokenizer, "bos_token", None)
        return tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos)))

    def _prompt_ids(self, request: EngineRequest) -> list[int]:
        if request.prompt_token_ids is not None:
            return list(request.prompt_token_ids)
        if request.prompt is None:
            raise InvalidRequest("request has neither a prompt nor prompt token ids", param="prompt")
        return self._encode(request.prompt)

    def _sampling_params(self, params: SamplingParams, prompt_len: int):
        engine = self._started()
        if params.seed is not None:
            raise InvalidRequest("furiosa-llm does not support a sampling seed", param="seed")
        params = fitted(params, prompt_len, engine.max_model_len)
        if prompt_len + params.max_tokens > engine.max_model_len:
            raise ContextLengthExceeded(
                f"prompt ({prompt_len}) plus max_tokens ({params.max_tokens}) exceeds the model's "
                f"context of {engine.max_model_len} tokens",
                param="max_tokens" if prompt_len < engine.max_model_len else "prompt",
            )
        options = dict(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            output_kind=self._delta_kind,
        )
        if params.stop:  # only passed when used: older furiosa-llm lacks these
            options["stop"] = list(params.stop)
        if params.ignore_eos:
            options["ignore_eos"] = True
        try:
            return self._sampling_params_cls(**options)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"furiosa-llm rejected the sampling parameters: {exc}") from exc


def _finish_reason(reason: str | None) -> str | None:
    """furiosa-llm's reason mapped to ours: "length" stays, any other end is "stop"."""
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"
