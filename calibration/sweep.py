"""One pool's calibration sweep: the grid of (batch, prompt) cells, their
scheduling within a time budget, and what each cell measures.

For every pool and every cell (batch size × prompt length) of its grid the
sweep sends ``batch`` concurrent streaming completions pinned to the pool
(``x-hetserve-pool-pin``), each with a prompt of exactly ``prompt`` token ids
and ``max_tokens = output`` with ``ignore_eos``, so every sequence is exactly
``prompt + output`` tokens long. Around each cell it reads the pool's
cumulative counters from ``GET /v1/fleet`` and turns their differences into
joules per output token and watts. The result is a calibrated
:class:`routing.EfficiencyProfile` (``<out>/<pool>.json``) and its heat map
(``<out>/<pool>.png``). See ``docs/calibration.md``.

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

import asyncio
import random
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from calibration.client import GatewayClient, Infeasible, RequestFailed, RequestResult
from fleet.api import PoolView
from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS

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

OK, INFEASIBLE, SKIPPED, ERROR = "ok", "infeasible", "skipped", "error"


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
    pool: PoolView
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
    def __init__(self, client: GatewayClient, pool: PoolView, model: str, batch_sizes: list[int],
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

    async def counters(self) -> tuple[PoolView, PoolView]:
        """The pool's view now, as counters and as load (one read, two roles)."""
        view = (await self.client.fleet())[self.pool.name]
        return view, view

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
            d_attr = after.energy_joules - before.energy_joules
            d_total = after.energy_total_joules - before.energy_total_joules
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
    pool: PoolView,
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


def model_predictor(pool: PoolView, model: str | None = None) -> Callable[[int, int, int], Any] | None:
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
    key = pool.model or None
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
