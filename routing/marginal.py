"""What a pool spends *because of* one request: energy above idle and busy time.

A replica decoding a batch of ``b`` spends ``E(b) = j_per_token(b) · b``
joules above its idle draw per step (the profile cell's attributed J/token,
which amortises the batch's prefills), and ``τ(b) = tpot_ms(b)`` per step.
A request of ``s`` sequences joining a batch of ``b`` rides ``L``
(``max_new_tokens``) steps at ``b + s`` instead of ``b``:

    marginal joules  = L · (E(b + s) - E(b))        (E(0) = 0: an idle pool
    marginal seconds = L · (τ(b + s) - τ(b))         pays its idle draw anyway)

So a busy pool's extra cost is what a bigger batch does to every running
sequence's step, and an idle pool's is the request's whole attributed energy.
On a dynamic-batch engine ``E`` and ``τ`` are interpolated between batch
buckets; a static-shape NPU pays for its compiled bucket, so joining a
partly filled bucket costs nothing more. Results are per output token of
the request (``/ (L · s)``), cost per million tokens.
"""

from __future__ import annotations

from bisect import bisect_left

from routing.profile import EfficiencyProfile


def _per_step(prof: EfficiencyProfile, static: bool, batch: float, seq: int, metric: str) -> float | None:
    """Joules (``j``) or ms (``t``) of one step at ``batch``, or None without data."""
    if batch <= 0:
        return 0.0
    buckets = prof.batch_buckets
    i = min(bisect_left(buckets, batch), len(buckets) - 1)
    hi = _value(prof, buckets[i], seq, metric)
    if hi is None:
        return None
    if static or buckets[i] <= batch:  # a compiled bucket, or the batch at/past the last bucket
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


def marginal_energy(prof: EfficiencyProfile, static_buckets: tuple[int, ...], running: float,
                    sequences: int, seq: int) -> float | None:
    """Joules above idle per output token of a request of ``sequences`` joining ``running`` (see module doc)."""
    static = bool(static_buckets)
    after = _per_step(prof, static, running + sequences, seq, "j")
    before = _per_step(prof, static, running, seq, "j")
    if after is None or before is None:
        return None
    return max(after - before, 0.0) / sequences


def marginal_cost(prof: EfficiencyProfile, static_buckets: tuple[int, ...], price_per_hour: float,
                  running: float, sequences: int, seq: int) -> float | None:
    """The replica's price × the extra busy time, per million output tokens of the request."""
    if price_per_hour <= 0:
        return None
    static = bool(static_buckets)
    after = _per_step(prof, static, running + sequences, seq, "t")
    before = _per_step(prof, static, running, seq, "t")
    if after is None or before is None:
        return None
    return price_per_hour / 3600 * max(after - before, 0.0) / 1e3 / sequences * 1e6
