"""What a pool spends *because of* one request: energy above idle and busy time.

A replica decoding a batch of ``b`` spends ``E(b) = j_per_token(b) · b``
joules above its idle draw per step (the profile cell's attributed J/token,
which amortises the batch's prefills), and ``τ(b) = tpot_ms(b)`` per step.
A request of ``s`` sequences and ``L`` output tokens joining ``b`` running
sequences whose mean output is ``L̄`` keeps them company for about
``L - x`` steps and then runs alone for ``x = max(0, L - L̄ · b / (b + 1))``
steps (the longest of ``b`` uniformly advanced sequences has about
``L̄ · b / (b + 1)`` left), steps the replica would otherwise have spent idle:

    marginal joules  = (L - x) · (E(b + s) - E(b)) + x · E(s)
    marginal seconds = (L - x) · (τ(b + s) - τ(b)) + x · τ(s)

An idle replica (``b = 0``, ``x = L``) charges the request its whole
attributed energy; its idle draw is paid anyway and never counts. A busy one
charges what a bigger batch does to every running sequence's step, plus
the tail it keeps the replica busy for. ``E`` and ``τ`` are interpolated
between batch buckets, on static-shape NPUs too: a batch moves across
compiled buckets over a request's life, so the bucket ladder's average
slope is the honest marginal, not the zero of a partly filled bucket.
The request's own prefill adds ``prefill time × dynamic watts`` (a
compute-bound prefill draws about the replica's whole range above idle) and
its prefill time to the busy seconds. Results are per output token of the
request (``/ (L · s)``); cost is the replica's price × the marginal seconds,
per million tokens.
"""

from __future__ import annotations

from bisect import bisect_left

from routing.profile import EfficiencyProfile


def _per_step(prof: EfficiencyProfile, batch: float, seq: int, metric: str) -> float | None:
    """Joules (``j``) or ms (``t``) of one step at ``batch``, or None without data."""
    if batch <= 0:
        return 0.0
    buckets = prof.batch_buckets
    i = min(bisect_left(buckets, batch), len(buckets) - 1)
    hi = _value(prof, buckets[i], seq, metric)
    if hi is None:
        return None
    if buckets[i] <= batch:  # on a bucket, or past the last one
        return hi
    lo_b = buckets[i - 1] if i else 0
    lo = _value(prof, lo_b, seq, metric) if i else 0.0
    if lo is None:
        return hi
    return lo + (hi - lo) * (batch - lo_b) / (buckets[i] - lo_b)


def _value(prof: EfficiencyProfile, batch: int, seq: int, metric: str) -> float | None:
    cell = prof.lookup(batch, seq)
    if cell is None:
        return None
    if metric == "j":
        return None if cell.j_per_token is None else cell.j_per_token * cell.batch
    return cell.tpot_ms


def _marginal(prof: EfficiencyProfile, metric: str, running: int, sequences: int, output: int,
              mean_output: float, seq: int, prefill: float) -> float | None:
    """Marginal joules or ms of the request, per output token of it (see module doc)."""
    alone = _per_step(prof, sequences, seq, metric)
    if alone is None:
        return None
    if running <= 0:
        return (output * alone + prefill) / (output * sequences)
    after = _per_step(prof, running + sequences, seq, metric)
    before = _per_step(prof, running, seq, metric)
    if after is None or before is None:
        return None
    tail = max(0.0, output - mean_output * running / (running + 1))
    return ((output - tail) * max(after - before, 0.0) + tail * alone + prefill) / (output * sequences)


def marginal_energy(prof: EfficiencyProfile, running: int, sequences: int, output: int,
                    mean_output: float, seq: int, prefill_j: float = 0.0) -> float | None:
    """Joules above idle per output token of a request joining ``running`` sequences."""
    return _marginal(prof, "j", running, sequences, output, mean_output, seq, prefill_j)


def marginal_cost(prof: EfficiencyProfile, price_per_hour: float, running: int, sequences: int,
                  output: int, mean_output: float, seq: int, prefill_ms: float = 0.0) -> float | None:
    """The replica's price × the extra busy time, per million output tokens of the request."""
    if price_per_hour <= 0:
        return None
    ms = _marginal(prof, "t", running, sequences, output, mean_output, seq, prefill_ms)
    return None if ms is None else price_per_hour / 3600 * ms / 1e3 * 1e6
