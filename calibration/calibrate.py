"""``hetserve calibrate``: measure each pool's efficiency grid through the gateway.

For every pool and every cell (batch size × prompt length) of its grid the
sweep sends ``batch`` concurrent streaming completions pinned to the pool
(``x-hetserve-pool-pin``), each with a prompt of exactly ``prompt`` token ids
and ``max_tokens = output`` with ``ignore_eos``, so every sequence is exactly
``prompt + output`` tokens long. Around each cell it reads the pool's
cumulative counters from ``GET /v1/fleet`` and turns their differences into
joules per output token and watts. The result is a calibrated
:class:`routing.EfficiencyProfile` (``<out>/<pool>.json``) and its heat map
(``<out>/<pool>.png``). See ``docs/calibration.md``.

HTTP only: this module talks to a running gateway and never imports Ray.

What one cell measures (means over its requests and repeats):

- TTFT: request sent → first streamed chunk, at the client.
- TPOT: (last chunk − first chunk) / (completion tokens − 1), per request.
- throughput: completion tokens of the cell / wall time of the cell
  (first request sent → last stream ended).
- J/token: Δ ``energy_joules`` (attributed: above the pool's idle draw) /
  completion tokens of the cell.
- watts: Δ ``energy_total_joules`` (idle included) / the time between the end
  of the pool's previous request and the end of this cell's last one (the
  gateway refreshes the counters at the end of every request).
- $/Mtoken: ``price_per_hour / 3600 / throughput × 1e6``.

A ``400`` with code ``context_length_exceeded`` marks the cell infeasible and
every longer prompt of that pool infeasible too, without sending them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS, bucket_index
from routing.profile import Cell, EfficiencyProfile

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_OUT = "profiles"
DEFAULT_OUTPUT_TOKENS = 64
DEFAULT_REPEATS = 1
#: Per pool: the sweep stops starting cells once this is spent.
DEFAULT_TIME_BUDGET_S = 60.0
#: A cell runs only if its wall time, estimated from its measured neighbours, fits.
DEFAULT_MAX_CELL_S = 4.0
#: Prompt token ids are drawn from this range: real ids in every tokenizer
#: (past special tokens, inside even the 2048-token vocabulary of tiny-llama).
TOKEN_ID_RANGE = (100, 1000)
#: The warm-up request before a pool's first cell.
WARMUP_PROMPT_TOKENS = 16
PIN_HEADER = "x-hetserve-pool-pin"
API_KEY_ENV = "HETSERVE_API_KEY"

OK, INFEASIBLE, SKIPPED, ERROR = "ok", "infeasible", "skipped", "error"


# -- what the gateway tells us ---------------------------------------------------


@dataclass(frozen=True)
class PoolInfo:
    """One pool as ``GET /v1/fleet`` describes it."""

    name: str
    hardware: str
    engine: str
    emulated: bool
    models: tuple[str, ...]
    replicas: int
    healthy: bool
    capacity: int
    max_seq_len: int
    price_per_hour: float | None
    in_flight: int = 0
    running: int = 0
    waiting: int = 0
    model_key: str | None = None  # the engine's model (catalog key), when the fleet says

    @classmethod
    def from_fleet(cls, d: dict[str, Any]) -> PoolInfo:
        return cls(
            name=d["name"],
            hardware=d.get("hardware", "unknown"),
            engine=d.get("engine", "unknown"),
            emulated=bool(d.get("emulated", False)),
            models=tuple(d.get("models") or ()),
            replicas=int(d.get("replicas", 1)),
            healthy=bool(d.get("healthy", True)),
            capacity=int(d.get("capacity", 1)),
            max_seq_len=int(d.get("max_seq_len") or 1 << 30),
            price_per_hour=d.get("price_per_hour"),
            in_flight=int(d.get("in_flight", 0)),
            running=int(d.get("running", 0)),
            waiting=int(d.get("waiting", 0)),
            model_key=d.get("model"),
        )

    @property
    def busy(self) -> bool:
        return bool(self.in_flight or self.running or self.waiting)


@dataclass(frozen=True)
class Counters:
    """A pool's cumulative counters from ``GET /v1/fleet``."""

    output_tokens: int
    energy_j: float  # attributed: above idle
    energy_total_j: float  # idle included

    @classmethod
    def from_fleet(cls, d: dict[str, Any]) -> Counters:
        return cls(int(d.get("output_tokens", 0)), float(d.get("energy_joules", 0.0)),
                   float(d.get("energy_total_joules", 0.0)))


class Infeasible(Exception):
    """The gateway refused the length: 400 ``context_length_exceeded``."""


class RequestFailed(Exception):
    """Any other failure of one calibration request."""


@dataclass(frozen=True)
class RequestResult:
    ttft_s: float
    tpot_s: float | None  # None with fewer than two completion tokens
    output_tokens: int
    end: float  # clock reading when the stream ended


class GatewayClient:
    """The three HTTP calls calibration makes; ``transport`` lets tests fake the gateway."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, timeout_s: float = 600.0,
                 clock: Callable[[], float] = time.perf_counter):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=10.0, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=512),
        )
        self.clock = clock

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fleet(self) -> dict[str, dict[str, Any]]:
        """Pool summaries by name."""
        r = await self._http.get("/v1/fleet")
        if r.status_code != 200:
            raise RequestFailed(f"GET /v1/fleet: HTTP {r.status_code}: {_error_message(r.content)}")
        return {p["name"]: p for p in r.json()["pools"]}

    async def complete(self, pool: str, model: str, prompt_ids: list[int], max_tokens: int) -> RequestResult:
        """One pinned streaming completion; raises ``Infeasible`` or ``RequestFailed``."""
        body = {
            "model": model, "prompt": prompt_ids, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True},
        }
        start = self.clock()
        first = last = None
        tokens = None
        async with self._http.stream("POST", "/v1/completions", json=body, headers={PIN_HEADER: pool}) as r:
            if r.status_code != 200:
                content = await r.aread()
                if r.status_code == 400 and _error_code(content) == "context_length_exceeded":
                    raise Infeasible(_error_message(content))
                raise RequestFailed(f"HTTP {r.status_code}: {_error_message(content)}")
            served_by = r.headers.get("x-hetserve-pool")
            if served_by is not None and served_by != pool:
                raise RequestFailed(f"pinned to {pool} but served by {served_by}")
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                if data.startswith('{"error"'):
                    raise RequestFailed(f"error in stream: {_error_message(data.encode())}")
                if '"usage":{' in data:  # the usage chunk (choices empty): no token in it
                    usage = json.loads(data).get("usage") or {}
                    tokens = usage.get("completion_tokens")
                    continue
                now = self.clock()
                first = now if first is None else first
                last = now
        end = self.clock()
        if first is None:
            raise RequestFailed("the stream carried no tokens")
        n = int(tokens) if tokens is not None else max_tokens
        tpot = (last - first) / (n - 1) if n > 1 else None
        return RequestResult(first - start, tpot, n, end)


def _error(content: bytes) -> dict[str, Any]:
    try:
        err = json.loads(content).get("error")
    except (ValueError, AttributeError):
        return {}
    return err if isinstance(err, dict) else {}


def _error_code(content: bytes) -> str | None:
    return _error(content).get("code")


def _error_message(content: bytes) -> str:
    return _error(content).get("message") or content[:200].decode("utf-8", "replace")


# -- grids ----------------------------------------------------------------------


def default_batch_sizes(capacity: int, buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS) -> list[int]:
    """Powers of two (the profile's batch buckets) from 1 up to the pool's capacity."""
    sizes = [b for b in buckets if b <= capacity]
    return sizes or [buckets[0]]


def default_prompt_lengths(max_seq_len: int, output_tokens: int,
                           buckets: Sequence[int] = DEFAULT_SEQ_BUCKETS) -> list[int]:
    """One prompt per sequence bucket, so that ``prompt + output`` fills the bucket exactly.

    Buckets up to the pool's ``max_seq_len`` are measured. Longer ones stay in
    the grid: the sweep sends the first of them as a probe the gateway is
    expected to refuse, and that refusal (not a guess) marks it and every
    longer bucket infeasible without sending them. ``max_seq_len`` is
    documentation here: the gateway's answer decides.
    """
    return [s - output_tokens for s in buckets if s - output_tokens >= 1]


def token_prompt(length: int, rng: random.Random) -> list[int]:
    """``length`` random token ids in ``TOKEN_ID_RANGE`` (distinct per request: no prefix-cache hits)."""
    lo, hi = TOKEN_ID_RANGE
    return [rng.randrange(lo, hi) for _ in range(length)]


# -- one pool's sweep -------------------------------------------------------------


@dataclass
class CellResult:
    """The outcome of one (batch, prompt) point of a sweep."""

    batch: int
    prompt_tokens: int
    output_tokens: int  # per sequence
    status: str = "pending"  # then ok | infeasible | skipped | error
    reason: str = ""
    requests: int = 0
    tokens: int = 0  # completion tokens measured
    wall_s: float | None = None  # per repeat (mean)
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    throughput_tok_s: float | None = None
    j_per_token: float | None = None  # attributed (above idle)
    total_j_per_token: float | None = None  # idle included
    watts: float | None = None
    cost_per_mtok: float | None = None
    predicted: Any = None  # workers.hardware.predict.Prediction, for emulated pools

    @property
    def seq_len(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def volume(self) -> int:
        return self.batch * self.seq_len

    def ratio(self, metric: str) -> float | None:
        """Calibrated / predicted for ``throughput_tok_s`` or ``j_per_token``."""
        mine = getattr(self, metric)
        if self.predicted is None or mine is None:
            return None
        theirs = getattr(self.predicted, metric)
        return mine / theirs if theirs else None


@dataclass
class PoolSweep:
    pool: PoolInfo
    model: str
    output_tokens: int
    batch_sizes: list[int]
    prompt_lengths: list[int]
    cells: list[CellResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass
class _Acc:
    """Sums over the repeats of one cell."""

    requests: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    attributed_j: float = 0.0
    total_j: float = 0.0
    window_s: float = 0.0
    energy_seen: bool = False


class _Sweep:
    def __init__(self, client: GatewayClient, pool: PoolInfo, model: str, batch_sizes: list[int],
                 prompt_lengths: list[int], output_tokens: int, repeats: int, time_budget_s: float,
                 max_cell_s: float, seed: int, progress, predictor, log: Callable[[str], None]):
        self.client, self.pool, self.model = client, pool, model
        self.batches, self.prompts = sorted(set(batch_sizes)), sorted(set(prompt_lengths))
        self.output, self.repeats = output_tokens, repeats
        self.budget_s, self.max_cell_s = time_budget_s, max_cell_s
        self.rng = random.Random(seed)
        self.progress, self.predictor, self.log = progress, predictor, log
        self.clock = client.clock
        self.result = PoolSweep(pool, model, output_tokens, self.batches, self.prompts)
        self.by_point: dict[tuple[int, int], CellResult] = {}
        self.prev_end: float | None = None
        self.busy_warned = False

    def warn(self, text: str) -> None:
        self.result.warnings.append(text)
        self.log(f"calibrate: {self.pool.name}: warning: {text}")

    async def counters(self) -> tuple[Counters, PoolInfo]:
        d = (await self.client.fleet())[self.pool.name]
        return Counters.from_fleet(d), PoolInfo.from_fleet(d)

    async def run(self) -> PoolSweep:
        t0 = self.clock()
        if self.pool.replicas > 1:
            self.warn(f"{self.pool.replicas} replicas: the batch spreads over them and the energy "
                      "counters lag for replicas that did not serve the last request; cells are per pool, "
                      "not per replica")
        await self.warm_up()
        infeasible_from: int | None = None
        probed = False
        # Smallest token volume first: both neighbours a cell's time is estimated
        # from come before it, and a time budget cuts the dearest cells.
        points = sorted(((b, p) for p in self.prompts for b in self.batches),
                        key=lambda bp: (bp[0] * (bp[1] + self.output), bp[1], bp[0]))
        for batch, prompt in points:
            cell = CellResult(batch, prompt, self.output)
            self.by_point[(batch, prompt)] = cell
            self.result.cells.append(cell)
            if self.progress is not None:
                self.progress.set_postfix_str(f"batch {batch} × prompt {prompt}", refresh=False)
            # The first length past the pool's reported limit is sent once, whatever
            # the time estimates say: the gateway should refuse it at once.
            probe = not probed and batch == self.batches[0] and cell.seq_len > self.pool.max_seq_len
            if infeasible_from is not None and prompt >= infeasible_from:
                cell.status = INFEASIBLE
                cell.reason = f"a {infeasible_from}-token prompt was already refused"
            elif not probe and (why := self.skip_reason(cell, self.clock() - t0)) is not None:
                cell.status, cell.reason = SKIPPED, why
            else:
                probed = probed or probe
                await self.measure(cell)
                if cell.status == INFEASIBLE:
                    infeasible_from = prompt
            if self.progress is not None:
                self.progress.update(1)
        self.result.cells.sort(key=lambda c: (c.prompt_tokens, c.batch))
        self.result.elapsed_s = self.clock() - t0
        return self.result

    async def warm_up(self) -> None:
        """One short request: loads lazy engine state and dates the energy counters."""
        ids = token_prompt(WARMUP_PROMPT_TOKENS, self.rng)
        try:
            res = await self.client.complete(self.pool.name, self.model, ids, min(8, self.output))
        except (Infeasible, RequestFailed) as exc:
            raise RequestFailed(f"warm-up request failed: {exc}") from None
        self.prev_end = res.end

    def skip_reason(self, cell: CellResult, elapsed: float) -> str | None:
        """Why a cell is not run: it would be too slow, estimated from measured neighbours."""
        i, j = self.batches.index(cell.batch), self.prompts.index(cell.prompt_tokens)
        neighbours = []
        if i > 0:
            neighbours.append(self.by_point[(self.batches[i - 1], cell.prompt_tokens)])
        if j > 0:
            neighbours.append(self.by_point[(cell.batch, self.prompts[j - 1])])
        if any(n.status == SKIPPED for n in neighbours):
            return "a smaller neighbouring cell was skipped"
        estimate = self.estimate(cell, neighbours)
        if not any(c.status == OK for c in self.result.cells):
            return None  # the first measurable cell always runs
        if elapsed >= self.budget_s:
            return f"time budget of {self.budget_s:g} s spent"
        if estimate is None:
            return None
        total = estimate * self.repeats
        if self.max_cell_s > 0 and estimate > self.max_cell_s:
            return f"estimated {estimate:.1f} s per run > --max-cell-s {self.max_cell_s:g}"
        if elapsed + total > self.budget_s:
            return f"estimated {total:.1f} s would overrun the {self.budget_s:g} s time budget"
        return None

    def estimate(self, cell: CellResult, neighbours: list[CellResult]) -> float | None:
        """Wall time of one run: the fastest cell so far plus the neighbour's excess, scaled by token volume."""
        measured = [c.wall_s for c in self.result.cells if c.status == OK and c.wall_s is not None]
        if not measured:
            return None
        floor = min(measured)
        guesses = [floor + (n.wall_s - floor) * cell.volume / n.volume
                   for n in neighbours if n.status == OK and n.wall_s is not None]
        return min(guesses) if guesses else None

    async def measure(self, cell: CellResult) -> None:
        acc = _Acc()
        for _ in range(self.repeats):
            before, info = await self.counters()
            if info.busy and not self.busy_warned:
                self.busy_warned = True
                self.warn(f"pool not idle before batch {cell.batch} × prompt {cell.prompt_tokens} "
                          f"(in_flight {info.in_flight}, running {info.running}, waiting {info.waiting}): "
                          "other traffic skews this cell (reported once per pool)")
            prompts = [token_prompt(cell.prompt_tokens, self.rng) for _ in range(cell.batch)]
            start = self.clock()
            # The counters were last refreshed when the pool's previous request ended.
            window_start = self.prev_end if self.prev_end is not None else start
            outcomes = await asyncio.gather(
                *(self.client.complete(self.pool.name, self.model, p, self.output) for p in prompts),
                return_exceptions=True,
            )
            refused = [o for o in outcomes if isinstance(o, Infeasible)]
            failed = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, Infeasible)]
            done = [o for o in outcomes if isinstance(o, RequestResult)]
            if done:
                self.prev_end = max(max(r.end for r in done), self.prev_end or start)
            if refused:
                cell.status, cell.reason = INFEASIBLE, str(refused[0])
                return
            if failed:
                cell.status, cell.reason = ERROR, f"{len(failed)}/{cell.batch} requests failed: {failed[0]}"
                return
            after, _ = await self.counters()
            end = max(r.end for r in done)
            tokens = sum(r.output_tokens for r in done)
            if after.output_tokens - before.output_tokens > tokens:
                self.warn(f"the pool made {after.output_tokens - before.output_tokens} tokens during "
                          f"batch {cell.batch} × prompt {cell.prompt_tokens}, this sweep {tokens}: "
                          "other traffic skews its energy")
            acc.requests += len(done)
            acc.tokens += tokens
            acc.wall_s += end - start
            acc.ttft.extend(r.ttft_s for r in done)
            acc.tpot.extend(r.tpot_s for r in done if r.tpot_s is not None)
            d_attr = after.energy_j - before.energy_j
            d_total = after.energy_total_j - before.energy_total_j
            if d_attr or d_total:
                acc.energy_seen = True
            acc.attributed_j += max(0.0, d_attr)
            acc.total_j += max(0.0, d_total)
            acc.window_s += end - window_start
        self.finish(cell, acc)

    def finish(self, cell: CellResult, acc: _Acc) -> None:
        cell.status = OK
        cell.requests, cell.tokens = acc.requests, acc.tokens
        cell.wall_s = acc.wall_s / self.repeats
        cell.ttft_ms = 1000 * statistics.fmean(acc.ttft)
        cell.tpot_ms = 1000 * statistics.fmean(acc.tpot) if acc.tpot else None
        cell.throughput_tok_s = acc.tokens / acc.wall_s if acc.wall_s > 0 else None
        if acc.energy_seen and acc.tokens:
            cell.j_per_token = acc.attributed_j / acc.tokens
            cell.total_j_per_token = acc.total_j / acc.tokens
            cell.watts = acc.total_j / acc.window_s if acc.window_s > 0 else None
        price = self.pool.price_per_hour
        if price is not None and cell.throughput_tok_s:
            cell.cost_per_mtok = price / 3600 / cell.throughput_tok_s * 1e6
        if self.predictor is not None:
            try:
                cell.predicted = self.predictor(cell.batch, cell.prompt_tokens, cell.output_tokens)
            except Exception as exc:  # the model may refuse a shape the pool ran: say so, go on
                self.log(f"calibrate: {self.pool.name}: no prediction for batch {cell.batch} × "
                         f"prompt {cell.prompt_tokens}: {exc}")


async def sweep_pool(
    client: GatewayClient,
    pool: PoolInfo,
    *,
    model: str | None = None,
    batch_sizes: Iterable[int] | None = None,
    prompt_lengths: Iterable[int] | None = None,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    repeats: int = DEFAULT_REPEATS,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    max_cell_s: float = DEFAULT_MAX_CELL_S,
    seed: int = 0,
    progress: bool = False,
    predictor: Callable[[int, int, int], Any] | None = None,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> PoolSweep:
    """Measure one pool's grid, cell after cell (see the module doc).

    Grids default to :func:`default_batch_sizes` and :func:`default_prompt_lengths`.
    ``predictor(batch, prompt, output)`` (e.g. :func:`model_predictor`) attaches
    the hardware model's figures to each measured cell. Raises
    ``RequestFailed`` when the pool cannot be swept at all (its warm-up failed).
    """
    if repeats < 1 or output_tokens < 1:
        raise ValueError("repeats and output_tokens must be >= 1")
    model = model or pool.models[0]
    batches = list(batch_sizes) if batch_sizes is not None else default_batch_sizes(pool.capacity)
    prompts = (list(prompt_lengths) if prompt_lengths is not None
               else default_prompt_lengths(pool.max_seq_len, output_tokens))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(set(batches)) * len(set(prompts)), desc=pool.name, unit="cell",
                   file=sys.stderr, dynamic_ncols=True, leave=True)
        def log(text: str) -> None:
            bar.write(text, file=sys.stderr)
    try:
        sweep = _Sweep(client, pool, model, batches, prompts, output_tokens, repeats, time_budget_s,
                       max_cell_s, seed, bar, predictor, log)
        if pool.busy:
            sweep.warn(f"pool not idle at the start (in_flight {pool.in_flight}, running {pool.running}, "
                       f"waiting {pool.waiting}): calibrate against an otherwise idle pool")
        return await sweep.run()
    finally:
        if bar is not None:
            bar.close()


def model_predictor(pool: PoolInfo, model: str | None = None) -> Callable[[int, int, int], Any] | None:
    """``(batch, prompt, output) -> Prediction`` from the hardware model, for emulated pools.

    None for real pools, when ``workers.hardware`` is not importable here, or
    when no catalog model matches the pool's model.
    """
    if not pool.emulated:
        return None
    try:
        from workers.hardware import CatalogError, get_hardware
        from workers.hardware.predict import model_key_for, predict
    except ImportError:
        return None
    key = pool.model_key if pool.model_key else None
    for name in ([model] if model else []) + list(pool.models):
        key = key or model_key_for(name)
    if key is None:
        return None
    try:
        get_hardware(pool.hardware)
    except CatalogError:
        return None
    return lambda batch, prompt, output: predict(pool.hardware, key, batch, prompt, output,
                                                 max_batch=pool.capacity)


# -- results ----------------------------------------------------------------------


def build_profile(
    sweep: PoolSweep,
    batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS,
    seq_buckets: Sequence[int] = DEFAULT_SEQ_BUCKETS,
    created: datetime | None = None,
) -> EfficiencyProfile:
    """The calibrated profile of a sweep.

    A measurement lands in the cell of its batch and ``prompt + output``
    rounded up to buckets. When several land in one cell, the largest
    feasible one stands for it (routing rounds shapes up, so a cell should
    hold the dearest shape it covers); a cell with only refusals is
    ``feasible: false``. Skipped and failed points leave no cell.
    """
    groups: dict[tuple[int, int], list[CellResult]] = {}
    for c in sweep.cells:
        if c.status not in (OK, INFEASIBLE):
            continue
        bi, si = bucket_index(batch_buckets, c.batch), bucket_index(seq_buckets, c.seq_len)
        if bi == len(batch_buckets) or si == len(seq_buckets):
            continue  # off the grid
        groups.setdefault((batch_buckets[bi], seq_buckets[si]), []).append(c)
    cells = []
    for (b, s), group in sorted(groups.items()):
        feasible = [c for c in group if c.status == OK]
        if not feasible:
            cells.append(Cell(b, s, provenance="calibrated", feasible=False))
            continue
        c = max(feasible, key=lambda c: (c.batch, c.seq_len))
        cells.append(Cell(
            b, s, throughput_tok_s=c.throughput_tok_s, ttft_ms=c.ttft_ms, tpot_ms=c.tpot_ms,
            watts=c.watts, j_per_token=c.j_per_token, cost_per_mtok=c.cost_per_mtok,
            samples=c.requests, online_samples=0, provenance="calibrated", feasible=True,
        ))
    return EfficiencyProfile(
        sweep.pool.name, sweep.pool.hardware, sweep.model,
        batch_buckets=batch_buckets, seq_buckets=seq_buckets,
        created=created or datetime.now(timezone.utc).replace(microsecond=0), cells=cells,
    )


_MARK = {INFEASIBLE: "x", SKIPPED: ".", ERROR: "!"}


def summary(sweep: PoolSweep) -> str:
    """A short table: J/token per batch × sequence length, counts, and the model comparison."""
    p = sweep.pool
    counts = {s: sum(1 for c in sweep.cells if c.status == s) for s in (OK, INFEASIBLE, SKIPPED, ERROR)}
    kind = f"{p.hardware}, {'emulated' if p.emulated else p.engine}"
    lines = [
        f"{p.name} ({kind}) model {sweep.model}, {sweep.output_tokens} output tokens: "
        f"{counts[OK]} cells measured, {counts[INFEASIBLE]} infeasible, {counts[SKIPPED]} skipped, "
        f"{counts[ERROR]} failed in {sweep.elapsed_s:.1f} s",
    ]
    seqs = sorted({c.seq_len for c in sweep.cells})
    width = max(9, *(len(str(s)) + 1 for s in seqs)) if seqs else 9
    lines.append("J/token" + " " * 3 + "".join(f"{s:>{width}}" for s in seqs) + "   (seq = prompt + output)")
    for b in sweep.batch_sizes:
        row = f"batch {b:<4}"
        for s in seqs:
            c = next((c for c in sweep.cells if c.batch == b and c.seq_len == s), None)
            if c is None:
                text = ""
            elif c.status == OK:
                text = "?" if c.j_per_token is None else f"{c.j_per_token:.3g}"[: width - 1]
            else:
                text = _MARK[c.status]
            row += f"{text:>{width}}"
        lines.append(row)
    lines.append("x infeasible, . skipped (too slow for --max-cell-s or the time budget), ! failed, ? no energy")
    ok = [c for c in sweep.cells if c.status == OK]
    if ok:
        best = max(ok, key=lambda c: c.throughput_tok_s or 0)
        lines.append(f"peak {best.throughput_tok_s:.0f} tok/s at batch {best.batch} × seq {best.seq_len}; "
                     f"TTFT {min(c.ttft_ms for c in ok):.0f}-{max(c.ttft_ms for c in ok):.0f} ms")
    ratios = {m: [r for c in ok if (r := c.ratio(m)) is not None] for m in ("throughput_tok_s", "j_per_token")}
    if any(ratios.values()):
        parts = [
            f"{label} {statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
            for label, v in (("throughput", ratios["throughput_tok_s"]), ("J/token", ratios["j_per_token"])) if v
        ]
        lines.append(f"calibrated / hardware model, median [range] over {max(map(len, ratios.values()))} cells: "
                     + ", ".join(parts))
    for failed in (c for c in sweep.cells if c.status == ERROR):
        lines.append(f"failed: batch {failed.batch} × prompt {failed.prompt_tokens}: {failed.reason}")
    return "\n".join(lines)


def cell_rows(sweep: PoolSweep) -> str:
    """Every point of a sweep, one line each (``--verbose``)."""
    head = (f"{'batch':>5} {'prompt':>6} {'seq':>6} {'status':>10} {'tok/s':>8} {'ttft_ms':>8} {'tpot_ms':>8} "
            f"{'W':>7} {'J/tok':>7} {'$/Mtok':>7} {'thr/model':>9} {'J/model':>8}")
    rows = [head]

    def f(v, spec):
        return format(v, spec) if v is not None else format("-", ">" + spec.split(".")[0])

    for c in sweep.cells:
        rows.append(
            f"{c.batch:>5} {c.prompt_tokens:>6} {c.seq_len:>6} {c.status:>10} {f(c.throughput_tok_s, '8.0f')} "
            f"{f(c.ttft_ms, '8.1f')} {f(c.tpot_ms, '8.2f')} {f(c.watts, '7.1f')} {f(c.j_per_token, '7.3g')} "
            f"{f(c.cost_per_mtok, '7.3g')} {f(c.ratio('throughput_tok_s'), '9.2f')} {f(c.ratio('j_per_token'), '8.2f')}"
            + (f"  {c.reason}" if c.reason and c.status != OK else "")
        )
    return "\n".join(rows)


def write_outputs(sweep: PoolSweep, out_dir: str | Path, metric: str = "j_per_token") -> tuple[Path, Path]:
    """``<out>/<pool>.json`` (the profile) and ``<out>/<pool>.png`` (its heat map)."""
    from routing.heatmap import plot_profile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile = build_profile(sweep)
    json_path, png_path = out / f"{sweep.pool.name}.json", out / f"{sweep.pool.name}.png"
    profile.save(json_path)
    note = (f"calibrated through the gateway, {sweep.output_tokens} output tokens per sequence"
            + ("; EMULATED pool: energy and speed come from the hardware model" if sweep.pool.emulated else ""))
    plot_profile(profile, png_path, metric=metric, note=note)
    return json_path, png_path


# -- the command ------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hetserve calibrate",
        description="Measure each pool's efficiency grid (batch × sequence length) through a running "
                    "gateway; write <out>/<pool>.json (calibrated profile) and <out>/<pool>.png (heat map).",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pool", action="append", metavar="NAME", help="pool to calibrate (repeatable)")
    which.add_argument("--all", action="store_true", help="every pool of the fleet, one after another")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"the gateway (default {DEFAULT_BASE_URL})")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                   help=f"bearer key, when the gateway has api_keys (default: ${API_KEY_ENV})")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT}/)")
    p.add_argument("--model", help="served model name to calibrate (default: each pool's first)")
    p.add_argument("--batch-sizes", type=_int_list, metavar="N,N,...",
                   help="concurrent sequences per cell (default: 1, 2, 4, ... up to the pool's capacity, "
                        "at most 256)")
    p.add_argument("--prompt-lengths", type=_int_list, metavar="N,N,...",
                   help="prompt tokens per cell (default: one per sequence bucket 128 ... 32768, bucket "
                        "minus output tokens; past the pool's max_seq_len the first is probed once and, "
                        "if refused, it and the longer ones are marked infeasible)")
    p.add_argument("--output-tokens", type=_positive(int), default=DEFAULT_OUTPUT_TOKENS,
                   help=f"completion tokens per sequence, fixed (default {DEFAULT_OUTPUT_TOKENS})")
    p.add_argument("--repeats", type=_positive(int), default=DEFAULT_REPEATS,
                   help=f"runs per cell, averaged (default {DEFAULT_REPEATS})")
    p.add_argument("--time-budget-s", type=_positive(float), default=DEFAULT_TIME_BUDGET_S,
                   help=f"per pool: no cell starts that would overrun it (default {DEFAULT_TIME_BUDGET_S:g})")
    p.add_argument("--max-cell-s", type=float, default=DEFAULT_MAX_CELL_S,
                   help="skip cells whose estimated run time exceeds this, and the larger ones beyond them "
                        f"(default {DEFAULT_MAX_CELL_S:g}; 0 = no limit)")
    p.add_argument("--metric", default="j_per_token",
                   choices=("j_per_token", "throughput_tok_s", "ttft_ms", "tpot_ms", "watts", "cost_per_mtok"),
                   help="what the heat map colours (default j_per_token)")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt token ids")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="print every cell, not only the summary")
    return p


async def run_calibration(args: argparse.Namespace, transport: httpx.AsyncBaseTransport | None = None,
                          stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr

    def log(text: str) -> None:
        print(text, file=stderr, flush=True)

    client = GatewayClient(args.base_url, args.api_key, transport=transport)
    status = 0
    try:
        try:
            fleet = await client.fleet()
        except (httpx.HTTPError, RequestFailed, KeyError, ValueError) as exc:
            log(f"calibrate: cannot read the fleet at {args.base_url}/v1/fleet: {exc}")
            return 1
        names = list(fleet) if args.all else list(dict.fromkeys(args.pool))
        unknown = [n for n in names if n not in fleet]
        if unknown:
            log(f"calibrate: no pool named {', '.join(unknown)}; the fleet has {', '.join(fleet)}")
            return 2
        try:
            batches, prompts = _checked_grids(args, log)
        except ValueError as exc:
            log(f"calibrate: {exc}")
            return 2
        for name in names:
            pool = PoolInfo.from_fleet(fleet[name])
            if not pool.healthy:
                log(f"calibrate: {name}: unhealthy, skipped")
                status = 1
                continue
            if args.model and args.model not in pool.models:
                log(f"calibrate: {name}: does not serve {args.model!r} (serves {', '.join(pool.models)}), skipped")
                status = 1
                continue
            try:
                sweep = await sweep_pool(
                    client, pool, model=args.model, batch_sizes=batches, prompt_lengths=prompts,
                    output_tokens=args.output_tokens, repeats=args.repeats, time_budget_s=args.time_budget_s,
                    max_cell_s=args.max_cell_s, seed=args.seed, progress=not args.no_progress,
                    predictor=model_predictor(pool, args.model), log=log,
                )
            except (RequestFailed, httpx.HTTPError, KeyError) as exc:
                log(f"calibrate: {name}: failed: {type(exc).__name__}: {exc}")
                status = 1
                continue
            json_path, png_path = write_outputs(sweep, args.out, args.metric)
            print(summary(sweep), file=stdout)
            if args.verbose:
                print(cell_rows(sweep), file=stdout)
            print(f"wrote {json_path} and {png_path}\n", file=stdout, flush=True)
            if any(c.status == ERROR for c in sweep.cells):
                status = 1
    finally:
        await client.aclose()
    return status


def _checked_grids(args: argparse.Namespace, log) -> tuple[list[int] | None, list[int] | None]:
    """Explicit grids, less the values no profile cell can hold."""
    batches, prompts = args.batch_sizes, args.prompt_lengths
    if batches is not None:
        kept = [b for b in batches if b <= DEFAULT_BATCH_BUCKETS[-1]]
        if len(kept) < len(batches):
            log(f"calibrate: batch sizes above {DEFAULT_BATCH_BUCKETS[-1]} (the last batch bucket) dropped")
        if not kept:
            raise ValueError("no batch size left to measure")
        batches = kept
    if prompts is not None:
        limit = DEFAULT_SEQ_BUCKETS[-1] - args.output_tokens
        kept = [p for p in prompts if p <= limit]
        if len(kept) < len(prompts):
            log(f"calibrate: prompt lengths above {limit} (last sequence bucket {DEFAULT_SEQ_BUCKETS[-1]} "
                f"minus {args.output_tokens} output tokens) dropped")
        if not kept:
            raise ValueError("no prompt length left to measure")
        prompts = kept
    return batches, prompts


def calibrate_main(argv: list[str] | None = None) -> int:
    """``hetserve calibrate ...``: returns the exit status (0 ok, 1 a pool failed, 2 usage)."""
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # usage errors and --help: argparse printed why
        return int(exc.code or 0)
    if args.max_cell_s < 0:
        print("calibrate: --max-cell-s must be >= 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_calibration(args))
    except KeyboardInterrupt:
        print("calibrate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(calibrate_main())
