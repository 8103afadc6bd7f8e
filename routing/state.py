"""Snapshots of pools as the router sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # avoid an import cycle at run time
    from routing.profile import EfficiencyProfile


@dataclass(frozen=True, slots=True)
class PoolState:
    """One pool at one instant.

    The gateway counts ``in_flight`` (sequences it has sent and not yet seen
    finish) exactly; ``running``/``waiting``/``kv_free`` come from polling the
    pool's replicas and may be a poll interval old.
    """

    name: str
    hardware: str
    models: tuple[str, ...]
    healthy: bool = True
    in_flight: int = 0
    running: int = 0
    waiting: int = 0
    capacity: int = 1  # sequences the pool accepts at once (all replicas)
    replicas: int = 1  # engines sharing the load; a request joins one of them
    kv_free: float = 1.0  # fraction of KV cache free, 0..1
    max_seq_len: int = 1 << 30  # longest prompt+output the pool can run
    batch_buckets: tuple[int, ...] = ()  # static batch sizes (NPUs), empty = dynamic
    price_per_hour: float = 0.0
    emulated: bool = False
    profile: "EfficiencyProfile | None" = field(default=None, compare=False)
    capabilities: frozenset[str] = frozenset()  # request features its engine honours (RequestShape.features)

    @property
    def load(self) -> int:
        """Sequences the pool is busy with, as best known."""
        return max(self.in_flight, self.running + self.waiting)

    @property
    def saturated(self) -> bool:
        return self.load >= self.capacity

    def serves(self, model: str) -> bool:
        return model in self.models
