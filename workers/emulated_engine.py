"""An engine adapter whose timing and power come from a hardware model.

A background task runs :class:`ContinuousBatcher` steps in real time (scaled
by ``time_scale``) and hands each sequence its tokens when the step that made
them ends. The text is synthetic (:mod:`workers.emulation.text`). Everything
it reports is modelled: ``provenance = "emulated"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from workers.emulation.batcher import ContinuousBatcher, Sequence
from workers.emulation.text import SyntheticText, token_logprob
from workers.engine import EngineAdapter, EngineDelta, EngineRequest, EngineStats, fitted
from workers.errors import ContextLengthExceeded, InvalidRequest
from workers.hardware.catalog import resolve_hardware, resolve_model
from workers.hardware.model import HardwareModel, ModelSpec
from workers.spec import FaultSpec

#: How far behind schedule the driver may fall before it stops catching up
#: (a stalled event loop should not be followed by a burst of instant steps).
_MAX_LAG_S = 0.05

#: The token estimate of :meth:`EmulatedEngine.count_tokens`: UTF-8 bytes per token.
BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class EnergyReading:
    """Modelled energy since :meth:`EmulatedEngine.start`, in joules."""

    total_j: float  # idle draw over the whole (model) time plus all work
    attributed_j: float  # above idle: what the requests caused


class EmulatedEngine(EngineAdapter):
    """Emulates one replica of ``hardware`` serving ``model``."""

    provenance = "emulated"

    def __init__(
        self,
        hardware: str | HardwareModel,
        model: str | ModelSpec,
        max_batch: int,
        max_model_len: int | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        fault: FaultSpec | dict | None = None,
    ):
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.hardware = resolve_hardware(hardware)
        self.model = resolve_model(model)
        self.time_scale = time_scale
        self.fault = FaultSpec.model_validate(fault or {})
        self._clock = clock
        self._batcher = ContinuousBatcher(self.hardware, self.model, max_batch, max_model_len)
        self._queues: dict[str, asyncio.Queue[bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._started_at: float | None = None
        self._attributed_j = 0.0
        self._power_w = self.hardware.idle_watts_replica
        self._stats = EngineStats()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._started_at = self._clock()
            self._task = asyncio.create_task(self._drive(), name=f"emulated-{self.hardware.name}")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- requests ----------------------------------------------------------

    def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        """Validate at once, then stream one delta per token.

        Raises :class:`ContextLengthExceeded` with ``param=None``: the engine
        cannot tell a chat request (``messages``) from a completion
        (``prompt``), so the gateway sets the parameter name.
        """
        if self._task is None:
            raise RuntimeError("start() the engine before generate()")
        params = request.params
        if params.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
        if request.request_id in self._queues:
            raise InvalidRequest(f"request id {request.request_id!r} is already running")
        if request.prompt_token_ids is not None:
            prompt: str | list[int] = request.prompt_token_ids
            prompt_tokens = len(request.prompt_token_ids)
        elif request.prompt is not None:
            prompt = request.prompt
            prompt_tokens = self.count_tokens(request.prompt)
        else:
            raise InvalidRequest("a request needs a prompt or prompt_token_ids", param="prompt")
        params = fitted(params, prompt_tokens, self.max_model_len)
        total = prompt_tokens + params.max_tokens
        if total > self.max_model_len:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {total} tokens ({prompt_tokens} in the prompt, "
                f"{params.max_tokens} for the completion)."
            )
        self._batcher.add(Sequence(request.request_id, prompt_tokens, params.max_tokens))
        self._queues[request.request_id] = asyncio.Queue()
        self._stats.prompt_tokens_total += prompt_tokens
        self._wake.set()
        # Greedy (temperature 0) or seeded output is the same for the same prompt; sampled output without a
        # seed differs per request and per choice, as a real engine's does.
        seed = params.seed if params.seed is not None or params.temperature == 0 else random.getrandbits(63)
        text = SyntheticText(seed, prompt, params.stop)
        return self._stream(request.request_id, prompt_tokens, text, params.logprobs)

    async def _stream(
        self, request_id: str, prompt_tokens: int, text: SyntheticText, logprobs: int | None
    ) -> AsyncIterator[EngineDelta]:
        queue = self._queues[request_id]
        reason: str | None = None
        output_tokens = 0
        try:
            while reason is None:
                if output_tokens == self.fault.hang_after_tokens:
                    await asyncio.Event().wait()  # a hung engine: nothing more, until cancelled
                last = await queue.get()
                output_tokens += 1
                delta = text.next_token()
                reason = "stop" if text.stopped else "length" if last else None
                if reason == "length":
                    delta += text.flush()
                self._stats.output_tokens_total += 1
                if reason is not None:
                    self._stats.requests_finished += 1
                lps = None if logprobs is None else [token_logprob(text.last_token, logprobs)]
                yield EngineDelta(delta, prompt_tokens, output_tokens, reason, lps)
        finally:
            del self._queues[request_id]
            if reason != "length":  # stopped early or cancelled: free its batch slot
                self._batcher.remove(request_id)

    # -- the real-time driver ---------------------------------------------

    async def _drive(self) -> None:
        deadline: float | None = None
        while True:
            if not self._batcher.has_work():
                deadline = None
                self._wake.clear()
                await self._wake.wait()
                continue
            step = self._batcher.step()
            now = self._clock()
            start = now if deadline is None else max(deadline, now - _MAX_LAG_S)
            deadline = start + step.duration_s * self.time_scale
            self._power_w = step.energy_j / step.duration_s if step.duration_s else self._power_w
            await asyncio.sleep(max(0.0, deadline - self._clock()))
            self._power_w = self.hardware.idle_watts_replica
            self._attributed_j += step.attributed_energy_j
            finished = set(step.finished_ids)
            for seq_id in step.token_ids:
                queue = self._queues.get(seq_id)
                if queue is not None:
                    queue.put_nowait(seq_id in finished)

    # -- introspection -------------------------------------------------------

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """A Llama-3-style chat template, ending with the assistant header."""
        parts = ["<|begin_of_text|>"]
        for message in messages:
            parts.append(
                f"<|start_header_id|>{message.get('role', 'user')}<|end_header_id|>\n\n"
                f"{_content_text(message.get('content'))}<|eot_id|>"
            )
        parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
        return "".join(parts)

    def count_tokens(self, text: str) -> int:
        """Estimate: UTF-8 bytes / 4, rounded up, at least 1 (there is no tokenizer)."""
        return max(1, math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN))

    @property
    def max_model_len(self) -> int:
        return self._batcher.max_model_len

    def stats(self) -> EngineStats:
        return EngineStats(
            running=self._batcher.running,
            waiting=self._batcher.waiting,
            kv_cache_usage=self._batcher.kv_usage,
            prompt_tokens_total=self._stats.prompt_tokens_total,
            output_tokens_total=self._stats.output_tokens_total,
            requests_finished=self._stats.requests_finished,
        )

    def energy_joules(self) -> EnergyReading:
        """Modelled energy since start: idle draw over model time plus attributed work."""
        if self._started_at is None:
            return EnergyReading(0.0, 0.0)
        model_time_s = (self._clock() - self._started_at) / self.time_scale
        idle_j = self.hardware.idle_watts_replica * model_time_s
        return EnergyReading(idle_j + self._attributed_j, self._attributed_j)

    def power_watts(self) -> float:
        """Modelled draw right now: the running step's power, or idle."""
        return self._power_w


def _content_text(content: object) -> str:
    """OpenAI message content: a string, or a list of parts of which text parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")
