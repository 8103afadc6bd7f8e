"""Drive load at an OpenAI-compatible server and collect per-request results.

Open loop: requests leave at their scheduled arrival times (constant,
Poisson, gamma, ramp, or a replayed trace) whatever the server's pace.
Closed loop: ``concurrency`` clients each send the next request when their
last one finishes. Sweep: open-loop steps at rising rates until throughput
stops growing. Every run stops at its duration, request count or error
rate, never sends more than :data:`HARD_MAX_REQUESTS`, and each request is
bounded by its timeout, so every loop ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np

from loadtests.client import Target, send_request
from loadtests.config import RunSpec
from fleet.api import SLO_TPOT_HEADER, SLO_TTFT_HEADER, FleetView
from loadtests.fleet import EnergyReport, FleetUnavailable, energy_between, snapshot_fleet
from loadtests.lag import LoopLagProbe
from loadtests.metrics import Summary, summarize
from loadtests.progress import Progress
from loadtests.prompts import PromptFactory
from loadtests.result import RequestResult
from fleet.trace import TraceRecord, read_trace
from loadtests.workloads import generate_trace, sample_lengths

HARD_MAX_REQUESTS = 1_000_000
ERROR_RATE_MIN_SAMPLES = 20  # no error-rate stop before this many requests finished
_CLOSED_LOOP_BATCH = 1024


class RunError(Exception):
    """The run could not start (no model to ask for, unreadable trace...)."""


@dataclass(slots=True)
class SweepStep:
    rate: float
    summary: Summary


@dataclass(slots=True)
class RunOutcome:
    spec: RunSpec
    results: list[RequestResult]
    summary: Summary
    steps: list[SweepStep] = field(default_factory=list)
    stopped_by: str = "complete"  # or requests | duration | error_rate | saturated | max_steps


class StopRule:
    """Decides when to stop sending; trips once, with a reason."""

    def __init__(self, max_requests: int | None, duration_s: float | None, max_error_rate: float | None):
        self.max_requests = min(max_requests or HARD_MAX_REQUESTS, HARD_MAX_REQUESTS)
        self.duration_s = duration_s
        self.max_error_rate = max_error_rate
        self.reason: str | None = None
        self._finished = 0
        self._failed = 0
        self._event = asyncio.Event()

    def admits(self, index: int, elapsed_s: float) -> bool:
        """May request number ``index`` be sent ``elapsed_s`` into the run?"""
        if index >= self.max_requests:
            self.trip("requests")
        elif self.duration_s is not None and elapsed_s >= self.duration_s:
            self.trip("duration")
        return self.reason is None

    def record(self, result: RequestResult) -> None:
        self._finished += 1
        self._failed += not result.ok
        if (
            self.max_error_rate is not None
            and self._finished >= ERROR_RATE_MIN_SAMPLES
            and self._failed / self._finished > self.max_error_rate
        ):
            self.trip("error_rate")

    def trip(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._event.set()

    async def sleep(self, delay_s: float) -> bool:
        """Sleep unless tripped first; return whether it has tripped."""
        if delay_s > 0 and self.reason is None:
            try:
                async with asyncio.timeout(delay_s):
                    await self._event.wait()
            except TimeoutError:
                pass
        return self.reason is not None


async def run(spec: RunSpec, *, progress: bool = True, client: httpx.AsyncClient | None = None) -> RunOutcome:
    """Execute one run. Pass ``client`` to reuse one (tests pass a ``MockTransport`` client)."""
    target = Target(
        base_url=spec.base_url,
        endpoint=spec.endpoint,
        api_key=spec.api_key,
        headers=spec.headers,
        stream=spec.stream,
        timeout_s=spec.timeout_s,
    )
    owned = client is None
    if client is None:
        limits = httpx.Limits(max_connections=spec.load.concurrency, max_keepalive_connections=None)
        client = httpx.AsyncClient(limits=limits, timeout=spec.timeout_s)
    try:
        return await _Run(spec, target, client, progress).execute()
    finally:
        if owned:
            await client.aclose()


async def resolve_model(client: httpx.AsyncClient, target: Target) -> str:
    """The first model the server lists at ``/v1/models``."""
    url = target.base_url.rstrip("/") + "/v1/models"
    try:
        response = await client.get(url, headers=target.request_headers(), timeout=10.0)
        return response.json()["data"][0]["id"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
        raise RunError(f"no --model given and {url} lists none ({type(e).__name__})") from None


class _Run:
    """The state of one run: target, prompts, fleet snapshots."""

    def __init__(self, spec: RunSpec, target: Target, client: httpx.AsyncClient, progress: bool):
        self.spec = spec
        self.target = target
        self.client = client
        self.show_progress = progress
        self.prompts = PromptFactory(spec.data.tokenizer, spec.data.seed, spec.data.shared_prefix_tokens)
        self.start = 0.0

    async def execute(self) -> RunOutcome:
        spec = self.spec
        model = spec.model
        if model is None and spec.data.dataset == "synthetic":
            model = await resolve_model(self.client, self.target)
        first = await self._snapshot()
        self.start = time.perf_counter()
        async with LoopLagProbe() as probe:
            if spec.load.arrival == "sweep":
                return await self._sweep(model, first, probe)
            stop = _stop_rule(spec)
            records = self._records(model)
            total = spec.load.requests if spec.data.dataset == "synthetic" else None
            if spec.load.arrival == "closed":
                results = await self._closed_loop(records, stop, total)
            else:
                results = await self._open_loop(records, stop, 0, total)
        energy, note = _energy(first, await self._snapshot())
        summary = summarize(results, spec.slo, energy=energy, energy_note=note, client_lag_s=probe.lags_s)
        return RunOutcome(spec, results, summary, stopped_by=stop.reason or "complete")

    def _records(self, model: str | None, rate: float | None = None, seed_offset: int = 0) -> Iterator[TraceRecord]:
        spec, load, data = self.spec, self.spec.load, self.spec.data
        if data.dataset == "trace":
            try:
                records = read_trace(data.trace)
            except OSError as e:
                raise RunError(f"cannot read trace: {e}") from None
            if model:
                records = [r.model_copy(update={"model": model}) for r in records]
            return iter(records)
        if load.arrival == "closed":
            return _endless_records(spec, model)
        ramp = load.arrival == "ramp"
        return iter(
            generate_trace(
                model=model,
                rate=rate or load.rate,
                n=load.requests,
                duration=load.duration_s,
                arrival="constant" if ramp else ("poisson" if load.arrival == "sweep" else load.arrival),
                burstiness=load.burstiness,
                rate_end=load.rate_end if ramp else None,
                lengths=data.lengths,
                prompt_tokens=data.prompt_tokens,
                output_tokens=data.output_tokens,
                seed=data.seed + seed_offset,
            )
        )

    async def _open_loop(
        self, records: Iterator[TraceRecord], stop: StopRule, first_index: int, total: int | None
    ) -> list[RequestResult]:
        """Send each record at its arrival time after now; wait for all to finish."""
        begin = time.perf_counter()
        offset = begin - self.start
        results: list[RequestResult] = []
        tasks: list[asyncio.Task] = []
        progress = Progress(self.show_progress, total, self.spec.label)
        try:
            for i, record in enumerate(records):
                if not stop.admits(i, record.t):
                    break
                result = _result_for(first_index + i, record, offset + record.t)
                prompt = self.prompts.prompt(result.index, record.prompt_tokens)
                if await stop.sleep(begin + record.t - time.perf_counter()):
                    break
                tasks.append(asyncio.create_task(self._send(result, prompt, record, stop, progress)))
                results.append(result)
            await asyncio.gather(*tasks)
        finally:
            progress.close()
        return results

    async def _closed_loop(
        self, records: Iterator[TraceRecord], stop: StopRule, total: int | None
    ) -> list[RequestResult]:
        """``concurrency`` workers, each sending its next request when the last one ends."""
        results: list[RequestResult] = []
        progress = Progress(self.show_progress, total, self.spec.label)
        counter = iter(range(HARD_MAX_REQUESTS))

        async def worker() -> None:
            for i in counter:
                record = next(records, None)
                if record is None or not stop.admits(i, time.perf_counter() - self.start):
                    return
                result = _result_for(i, record, None)
                results.append(result)
                await self._send(result, self.prompts.prompt(i, record.prompt_tokens), record, stop, progress)

        try:
            await asyncio.gather(*(worker() for _ in range(self.spec.load.concurrency)))
        finally:
            progress.close()
        return results

    async def _sweep(self, model: str | None, first: FleetView | str, probe: LoopLagProbe) -> RunOutcome:
        load = self.spec.load
        rate, best = load.rate, 0.0
        steps: list[SweepStep] = []
        results: list[RequestResult] = []
        reason = "max_steps"
        before = first
        for step in range(load.sweep_max_steps):
            stop = _stop_rule(self.spec)
            records = self._records(model, rate=rate, seed_offset=step)
            lag_mark = len(probe.lags_s)
            step_results = await self._open_loop(records, stop, len(results), load.requests)
            after = await self._snapshot()
            energy, note = _energy(before, after)
            summary = summarize(step_results, self.spec.slo, energy=energy, energy_note=note,
                                client_lag_s=probe.lags_s[lag_mark:])
            steps.append(SweepStep(rate, summary))
            results += step_results
            before = after
            if stop.reason == "error_rate":
                reason = "error_rate"
                break
            if summary.request_throughput <= best * (1 + load.sweep_min_gain):
                reason = "saturated"
                break
            best = max(best, summary.request_throughput)
            rate *= load.sweep_factor
        energy, note = _energy(first, before)
        summary = summarize(results, self.spec.slo, energy=energy, energy_note=note, client_lag_s=probe.lags_s)
        return RunOutcome(self.spec, results, summary, steps, reason)

    async def _send(
        self, result: RequestResult, prompt: str, record: TraceRecord, stop: StopRule, progress: Progress
    ) -> None:
        await send_request(self.client, self.target, result, prompt, record.output_tokens, self.start,
                           slo_headers(record))
        stop.record(result)
        progress.update(result)

    async def _snapshot(self) -> FleetView | str:
        """The fleet's counters, or why there are none."""
        if not self.spec.energy:
            return "energy not measured (disabled)"
        try:
            return await snapshot_fleet(self.client, self.spec.base_url, self.target.request_headers())
        except FleetUnavailable as e:
            return f"no energy figures: {e}"


def slo_headers(record: TraceRecord) -> dict[str, str]:
    """A trace record's own targets as the gateway's ``x-hetserve-slo-*`` headers."""
    headers = {}
    if record.slo_ttft_ms is not None:
        headers[SLO_TTFT_HEADER] = f"{record.slo_ttft_ms:g}"
    if record.slo_tpot_ms is not None:
        headers[SLO_TPOT_HEADER] = f"{record.slo_tpot_ms:g}"
    return headers


def _stop_rule(spec: RunSpec) -> StopRule:
    return StopRule(spec.load.requests, spec.load.duration_s, spec.load.max_error_rate)


def _result_for(index: int, record: TraceRecord, scheduled_s: float | None) -> RequestResult:
    return RequestResult(
        index=index,
        model=record.model,
        scheduled_s=scheduled_s,
        prompt_tokens=record.prompt_tokens,
        slo_ttft_ms=record.slo_ttft_ms,
        slo_tpot_ms=record.slo_tpot_ms,
    )


def _energy(before: FleetView | str, after: FleetView | str) -> tuple[EnergyReport | None, str | None]:
    if isinstance(before, str) or isinstance(after, str):
        return None, before if isinstance(before, str) else after
    return energy_between(before, after), None


def _endless_records(spec: RunSpec, model: str) -> Iterator[TraceRecord]:
    """Closed-loop requests drawn in seeded batches until the stop rule ends the run."""
    rng = np.random.default_rng(spec.data.seed)
    for _ in range(HARD_MAX_REQUESTS // _CLOSED_LOOP_BATCH + 1):
        prompts, outputs = sample_lengths(
            spec.data.lengths, _CLOSED_LOOP_BATCH, rng, spec.data.prompt_tokens, spec.data.output_tokens
        )
        for p, o in zip(prompts, outputs):
            yield TraceRecord(t=0.0, model=model, prompt_tokens=int(p), output_tokens=int(o))
