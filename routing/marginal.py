"""What a pool spends *because of* one request: energy above idle and busy time.

A replica decoding a batch of ``b`` spends ``E(b) = j_per_token(b) · b``
joules above its idle draw per step (the profile cell's attributed J/token,
which amortises the batch's prefills), and ``τ(b) = tpot_ms(b)`` per step.
A request of ``s`` sequences and ``L`` output tokens joining ``b`` running
sequences whose mean output is ``L̄`` keeps them company for about
``L - x`` steps and then runs alone for ``x = max(0, L - L̄ · b / (b + 1))``
steps (the longest of ``b`` uniformly advanced sequences has about
``L̄ · b / (b + 1)`` left), steps the replica would otherwise have spent idle:

    marginal joules  = (L - x) · (E(b + s) - E(b)) + x · E(s) / (1 + a · x)
    marginal seconds = (L - x) · (τ(b + s) - τ(b)) + x · τ(s) / (1 + a · x)

Requests that arrive on the replica meanwhile share that tail: with ``a``
arrivals per step recently, the tail term is divided by ``1 + a · x``. (So a
replica that traffic keeps busy is cheap to join, one about to go idle is
not.) An idle replica (``b = 0``, ``x = L``) charges the request its whole
attributed energy, shared the same way; its idle draw is paid anyway and
never counts. A busy one
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
from collections.abc import Sequence

from routing.profile import EfficiencyProfile


def per_step(buckets: Sequence[int], values: Sequence[float | None], batch: float) -> float | None:
    """A per-step quantity (a profile ``Column``'s ``step_j`` or ``tpot_ms``) at
    ``batch``, interpolated between batch buckets; None without data."""
    if batch <= 0:
        return 0.0
    i = bisect_left(buckets, batch)
    if i == len(buckets):
        i -= 1
    hi = values[i]
    if hi is None or buckets[i] <= batch:  # no data, on a bucket, or past the last one
        return hi
    if not i:
        return hi * batch / buckets[0]
    lo = values[i - 1]
    if lo is None:
        return hi
    lo_b = buckets[i - 1]
    return lo + (hi - lo) * (batch - lo_b) / (buckets[i] - lo_b)


def per_token(buckets: Sequence[int], values: Sequence[float | None], running: int, sequences: int,
              output: int, mean_output: float, own: float = 0.0, arrivals_per_step: float = 0.0) -> float | None:
    """Marginal joules (``step_j``) or ms (``tpot_ms``) per output token of a request
    of ``sequences`` × ``output`` tokens joining ``running`` sequences (see module doc);
    ``own`` is what its prefill adds; ``arrivals_per_step`` the replica's recent
    arrivals per step, who will share the tail."""
    alone = per_step(buckets, values, sequences)
    if alone is None:
        return None
    if running <= 0:
        tail = output
        shared = 0.0
    else:
        after = per_step(buckets, values, running + sequences)
        before = per_step(buckets, values, running)
        if after is None or before is None:
            return None
        tail = output - mean_output * running / (running + 1)
        if tail < 0.0:
            tail = 0.0
        shared = (output - tail) * (after - before if after > before else 0.0)
    return (shared + tail * alone / (1.0 + arrivals_per_step * tail) + own) / (output * sequences)


def marginal_energy(prof: EfficiencyProfile, running: int, sequences: int, output: int,
                    mean_output: float, seq: int, prefill_j: float = 0.0) -> float | None:
    """Joules above idle per output token of a request joining ``running`` sequences."""
    col = prof.column(seq)
    return None if col is None else per_token(prof.batch_buckets, col.step_j, running, sequences, output,
                                              mean_output, prefill_j)


def cost_per_mtok(price_per_hour: float, marginal_ms_per_token: float | None) -> float | None:
    """The replica's price × marginal busy ms per token, per million tokens."""
    if price_per_hour <= 0 or marginal_ms_per_token is None:
        return None
    return price_per_hour / 3600 * marginal_ms_per_token / 1e3 * 1e6
