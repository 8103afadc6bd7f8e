"""Bucket grids: the batch sizes and sequence lengths profiles are kept at."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

DEFAULT_BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DEFAULT_SEQ_BUCKETS: tuple[int, ...] = (
    128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768,
)


def bucket_index(buckets: Sequence[int], value: int) -> int:
    """Index of the smallest bucket >= ``value``; ``len(buckets)`` past the last."""
    return bisect_left(buckets, value)


def round_up(buckets: Sequence[int], value: int) -> int:
    """Smallest bucket >= ``value``, clamped to the last bucket."""
    return buckets[min(bisect_left(buckets, value), len(buckets) - 1)]


def check_buckets(buckets: Sequence[int]) -> str | None:
    """Why ``buckets`` is not a usable grid axis, or None when it is."""
    if not buckets:
        return "must not be empty"
    if any(b <= 0 for b in buckets):
        return "must be positive"
    if any(a >= b for a, b in zip(buckets, buckets[1:])):
        return "must be strictly increasing"
    return None
