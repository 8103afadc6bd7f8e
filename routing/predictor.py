"""Per-pool forecast for one request sent *now*: TTFT, TPOT and marginal energy/cost.

The forecast reads the pool's queue (``PoolState``: sequences in flight, those
still waiting for their first token and their prompt tokens, output tokens
owed, the recent prompt-token rate) and the pool's profile cells. Per replica
(the request joins one of ``replicas`` engines sharing the load), with
``n`` sequences in flight, ``B`` batch slots and ``W`` prompt tokens waiting:

- **Slot wait.** When ``n + sequences > B`` the request waits for
  ``q = n + sequences - B`` slots to free. A full batch frees a slot every
  ``L / B`` steps (``L`` the mean output per sequence in flight), so the wait
  is ``q · L / B`` steps of the full batch.
- **Prefill.** The waiting prompts and this one are prefilled before the
  first token: ``prefill(W + prompt)``, from the batch-1 cell's TTFT of the
  matching sequence bucket, scaled linearly by tokens. An engine that
  prefills whole prompts in the admitting step (the emulated engine) adds one
  decode step of the running batch; a chunked-prefill engine
  (``prefill_chunk`` tokens per step) one decode step per chunk.
- **TTFT** = half a step of the running batch (the step in progress) + the
  slot wait + the prefill.
- **TPOT** = the TPOT cell of the batch the request joins, stretched by the
  prefills of later arrivals, which stall every decode: ``/ (1 - ρ)`` with
  ``ρ`` the share of time the replica spends prefilling at the recent prompt
  rate (capped at 0.8).

Both are multiplied by the pool's online correction: an exponentially
weighted mean (weight ``alpha``) of ``log(observed / uncorrected)`` over
finished requests, bounded to ``[min_factor, max_factor]``. ``observe`` is fed
by the gateway when a request finishes and by the simulator.

Marginal energy (``routing.marginal``) rides along, as the same forecast of
what the request does to the pool.
"""

from __future__ import annotations

import math
from bisect import bisect_left

from routing.marginal import cost_per_mtok, per_token
from routing.profile import Cell, EfficiencyProfile
from routing.shape import RequestShape
from routing.state import PoolState

#: Prefill share of a replica's time beyond which TPOT is no longer stretched.
MAX_PREFILL_SHARE = 0.8
_UNCORRECTED = (1.0, 1.0)
_UNSET = object()


class Prediction:
    """A pool's forecast for one request; ``*_raw_ms`` before the online correction.

    The marginal energy and cost are worked out when first read: a pool the
    SLO filter drops is never asked."""

    __slots__ = ("ttft_ms", "tpot_ms", "ttft_raw_ms", "tpot_raw_ms", "queued", "_inputs", "_energy", "_cost")

    def __init__(self, ttft_ms: float, tpot_ms: float, ttft_raw_ms: float, tpot_raw_ms: float, queued: int,
                 inputs: tuple):
        self.ttft_ms = ttft_ms
        self.tpot_ms = tpot_ms
        self.ttft_raw_ms = ttft_raw_ms
        self.tpot_raw_ms = tpot_raw_ms
        self.queued = queued  # sequences ahead of the request waiting for a batch slot (per replica)
        self._inputs = inputs  # (batch buckets, column, joined, sequences, output, mean output, own prefill ms, pool)
        self._energy = self._cost = _UNSET

    @property
    def marginal_j_per_token(self) -> float | None:
        """Joules above idle the pool spends per output token of the request (``routing.marginal``)."""
        if self._energy is _UNSET:
            buckets, col, joined, seqs, out, mean_out, own_ms, pool, arrivals = self._inputs
            self._energy = per_token(buckets, col.step_j, joined, seqs, out, mean_out,
                                     own_ms / 1e3 * pool.dynamic_watts, arrivals)
        return self._energy

    @property
    def marginal_cost_per_mtok(self) -> float | None:
        """The pool's price × the extra busy time the request causes, per million output tokens."""
        if self._cost is _UNSET:
            buckets, col, joined, seqs, out, mean_out, own_ms, pool, arrivals = self._inputs
            self._cost = None if pool.price_per_hour <= 0 else cost_per_mtok(
                pool.price_per_hour, per_token(buckets, col.tpot_ms, joined, seqs, out, mean_out, own_ms, arrivals))
        return self._cost

    @property
    def tpot_without_ms(self) -> float:
        """The TPOT the same forecast gives the batch the request would join, without the request:
        the stretch and correction alike, the step of the batch as it runs now (what a sequence
        running there gets whether or not the request joins)."""
        buckets, col, joined, seqs, _out, _mean_out, _own_ms, _pool, _arrivals = self._inputs
        tpots, last = col.tpot_ms, len(buckets) - 1
        i, j = bisect_left(buckets, joined + seqs), bisect_left(buckets, joined if joined > 1 else 1)
        step_with, step_without = tpots[i if i < last else last], tpots[j if j < last else last]
        return self.tpot_ms * step_without / step_with if step_with and step_without else self.tpot_ms

    @property
    def own_prefill_ms(self) -> float:
        """The request's own prefill (uncorrected): the stall its admission puts on every running sequence."""
        _buckets, _col, _joined, _seqs, _out, _mean_out, own_ms, _pool, _arrivals = self._inputs
        return own_ms

    def to_dict(self) -> dict:
        """The forecast as ``explain`` shows it (``*_uncorrected_ms``: before the online correction)."""
        return {
            "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "queued": self.queued,
            "marginal_j_per_token": self.marginal_j_per_token, "marginal_cost_per_mtok": self.marginal_cost_per_mtok,
            "ttft_uncorrected_ms": self.ttft_raw_ms, "tpot_uncorrected_ms": self.tpot_raw_ms,
            "tpot_without_ms": self.tpot_without_ms, "own_prefill_ms": self.own_prefill_ms,
        }

    def e2e_ms(self, max_new_tokens: int) -> float:
        return self.ttft_ms + self.tpot_ms * max(max_new_tokens - 1, 0)

    def __repr__(self) -> str:
        return (f"Prediction(ttft_ms={self.ttft_ms:.1f}, tpot_ms={self.tpot_ms:.2f}, queued={self.queued}, "
                f"marginal_j_per_token={self.marginal_j_per_token})")


class LatencyPredictor:
    """Forecasts per pool, corrected online per pool. One per router (or kept
    by the gateway across routing changes); its only state is the corrections."""

    def __init__(self, alpha: float = 0.1, min_factor: float = 0.25, max_factor: float = 4.0):
        self.alpha = alpha
        self.min_factor = min_factor
        self.max_factor = max_factor
        self._logs: dict[str, list[float]] = {}  # pool -> [log TTFT factor, log TPOT factor]
        self._factors: dict[str, tuple[float, float]] = {}

    def factors(self, pool: str) -> tuple[float, float]:
        """The pool's (TTFT, TPOT) correction factors."""
        return self._factors.get(pool, _UNCORRECTED)

    def observe(self, pool: str, predicted: Prediction, ttft_ms: float, tpot_ms: float | None) -> None:
        """Fold one finished request's observed TTFT (and TPOT, when it had 2+ tokens) into the pool's factors."""
        logs = self._logs.setdefault(pool, [0.0, 0.0])
        lo, hi = math.log(self.min_factor), math.log(self.max_factor)
        for i, raw, seen in ((0, predicted.ttft_raw_ms, ttft_ms), (1, predicted.tpot_raw_ms, tpot_ms)):
            if seen is None or seen <= 0 or raw <= 0:
                continue
            target = min(hi, max(lo, math.log(seen / raw)))
            logs[i] += self.alpha * (target - logs[i])
        self._factors[pool] = (math.exp(logs[0]), math.exp(logs[1]))

    def predict(self, pool: PoolState, shape: RequestShape, batch: int, cell: Cell | None) -> Prediction | None:
        """The forecast for ``shape`` joining ``pool`` at ``batch`` (its cell ``cell``);
        None when the pool's profile gives no TPOT for the shape. Prefill time: the
        batch-1 TTFT of the bucket whose prompt share (half the sequence, as
        modelled profiles assume) holds the tokens, scaled linearly."""
        prof = pool.profile
        if cell is None or cell.tpot_ms is None or prof is None:
            return None
        seq = shape.total_tokens
        col = prof.column(seq)
        buckets = prof.batch_buckets
        last = len(buckets) - 1
        tpots = col.tpot_ms
        reps = pool.replicas if pool.replicas > 1 else 1
        slots = pool.slots
        sequences = shape.sequences
        load = pool.load
        n = load // reps  # the least-loaded replica, which the request joins
        running = n - pool.prefilling // reps
        step_now = 0.0
        if running > 0:
            i = bisect_left(buckets, running)
            step_now = tpots[i if i < last else last] or 0.0
        mean_out = pool.decode_tokens / load if pool.decode_tokens and load else shape.max_new_tokens
        queued = n + sequences - slots
        wait_ms = 0.0
        if queued > 0:
            i = bisect_left(buckets, slots)
            full = tpots[i if i < last else last] or cell.tpot_ms
            wait_ms = queued * mean_out / slots * full
        else:
            queued = 0
        prompt = shape.prompt_tokens * sequences
        pending = pool.prefill_tokens / reps + prompt
        pcol = prof.column(int(2 * pending))
        if pending <= 0:  # nothing to prefill (an empty prompt on an idle pool)
            prefill_ms = 0.0
        elif pcol is not None and pcol.ttft_ms[0] is not None:
            prefill_ms = pcol.ttft_ms[0] * 2 * pending / pcol.seq_len
        else:
            prefill_ms = _prefill_ms(prof, pending)
            if prefill_ms is None:  # no batch-1 TTFT: the joined cell's TTFT, scaled by the queue
                prefill_ms = (cell.ttft_ms or 0.0) * pending / max(prompt, 1)
        chunks = -(-pending // pool.prefill_chunk) if pool.prefill_chunk else 1
        ttft = 0.5 * step_now + wait_ms + prefill_ms + chunks * step_now
        share = pool.prompt_rate / reps * prefill_ms / pending / 1e3 if pool.prompt_rate and pending > 0 else 0.0
        tpot = cell.tpot_ms / (1.0 - (share if share < MAX_PREFILL_SHARE else MAX_PREFILL_SHARE))
        f_ttft, f_tpot = self._factors.get(pool.name, _UNCORRECTED)
        joined = (n if n < slots - sequences else slots - sequences) if slots > sequences else 0
        own_ms = prefill_ms * prompt / pending if pending > 0 else 0.0
        arrivals = pool.arrival_rate / reps * cell.tpot_ms / 1e3  # per step, sharing the tail
        out = shape.max_new_tokens if shape.max_new_tokens > 1 else 1
        inputs = (buckets, col, joined, sequences, out, mean_out, own_ms, pool, arrivals)
        return Prediction(ttft * f_ttft, tpot * f_tpot, ttft, tpot, queued, inputs)


def _prefill_ms(prof: EfficiencyProfile, tokens: float) -> float | None:
    """Prefill time of ``tokens`` past the grid (or where its bucket has no
    batch-1 TTFT): the longest bucket that has one, scaled linearly."""
    col = next((c for s in reversed(prof.seq_buckets)
                if (c := prof.column(s)) is not None and c.ttft_ms[0] is not None), None)
    return None if col is None else col.ttft_ms[0] * 2 * tokens / col.seq_len
