"""Replica autoscaling decisions per pool: pure, clock injected, no Ray.

The same :class:`Scaler` runs in the simulator (virtual clock) and in Ray
Serve's application-level autoscaling policy (``workers.autoscaling``). Its
input is a snapshot of every pool (:class:`PoolLoad`); its output one typed
:class:`ScaleDecision` per pool.

Pools whose limits say ``efficiency`` are scaled together, per *group* (pools
serving the same models, so they can take each other's requests):

- **Up**: when the group's load, projected over the start-up time of the pool
  to grow (``load + rising slope × startup_s``), exceeds ``high`` × its
  target capacity (ready + starting replicas × ``target_ongoing`` each) for
  ``upscale_delay_s``, replicas are added to the pool with the least energy
  per token *idle included* (``j_per_token + idle_watts / tokens_per_s`` at its
  target load) among those that meet the SLOs there, then the next one, until
  the projected load fits. Starting replicas count as capacity to come, so a
  replica still booting is not asked for twice.
- **Down**: when the group's load stays under ``low`` × its capacity for
  ``max(downscale_delay_s, startup_s)`` (a replica shed sooner than it takes to
  start again saves less idle draw than it costs), one replica of the least
  efficient pool that has an idle one (its load fits in one replica fewer at
  ``low``) is shed, if the group then stays under the band's middle; the
  timer restarts, so sheds come one per delay. Nothing is shed while any pool
  of the group is starting replicas, nor from a pool grown within its
  ``downscale_delay_s``.
- Never below ``min_replicas`` nor above ``max_replicas``.

Pools without ``efficiency`` follow Ray Serve's default rule on their own:
``ceil(load / target_ongoing)`` once it has held for the up or down delay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class ScalerLimits:
    """One pool's autoscaling settings (the fleet file's ``autoscaling``)."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing: float = 1.0  # sequences one replica should carry
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    startup_s: float = 60.0  # from asking for a replica to its serving
    efficiency: bool = True  # scaled fleet-wide by efficiency; else alone, Serve's rule


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """One pool at one instant, as the scaler sees it.

    ``j_per_token`` (attributed, above idle), ``tokens_per_s`` (one replica)
    and ``meets_slo`` are predicted at ``target_ongoing`` sequences per replica
    from the pool's efficiency profile (modelled or measured).
    """

    name: str
    group: str
    ready: int
    starting: int
    load: float  # sequences in flight (running + waiting)
    j_per_token: float
    tokens_per_s: float
    idle_watts: float  # per replica
    meets_slo: bool
    limits: ScalerLimits

    @property
    def replicas(self) -> int:
        return self.ready + self.starting

    @property
    def capacity(self) -> float:
        """Sequences the pool should carry once its starting replicas serve."""
        return self.replicas * self.limits.target_ongoing

    @property
    def headroom(self) -> float:
        """Sequences the ready replicas can still take within the SLO-feasible target (< 0: over it)."""
        return self.ready * self.limits.target_ongoing - self.load

    @property
    def total_j_per_token(self) -> float:
        """Energy per output token of a replica at its target load, idle draw included."""
        if self.tokens_per_s <= 0:
            return math.inf
        return self.j_per_token + self.idle_watts / self.tokens_per_s


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """The static part of a ``PoolLoad``: a pool's limits and efficiency."""

    name: str
    group: str
    limits: ScalerLimits
    j_per_token: float
    tokens_per_s: float
    idle_watts: float
    meets_slo: bool

    def load(self, ready: int, starting: int, load: float) -> PoolLoad:
        """The scaler's snapshot of this pool now."""
        return PoolLoad(self.name, self.group, ready, starting, load, self.j_per_token,
                        self.tokens_per_s, self.idle_watts, self.meets_slo, self.limits)

    def to_dict(self) -> dict:
        """JSON-ready (Serve's ``policy_kwargs`` must be)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "PoolFigures":
        return cls(**{**d, "limits": ScalerLimits(**d["limits"])})


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    pool: str
    replicas: int  # what the pool should have (ready + starting)
    delta: int
    reason: str


@dataclass(slots=True)
class _GroupTimers:
    over_since: float | None = None
    under_since: float | None = None
    last_load: float | None = None
    last_t: float | None = None
    slope: float = 0.0  # sequences per second, smoothed


@dataclass(slots=True)
class _PoolTimers:
    want: int | None = None  # Serve's rule: the count waiting out its delay
    since: float = 0.0
    last_up: float = -math.inf


@dataclass
class Scaler:
    """Decides replica counts; keeps only its hysteresis timers between calls.

    ``high``/``low``: the band of group load over target capacity that holds
    replicas steady. ``slope_alpha``: smoothing of the load trend used to
    look ahead over start-up time.
    """

    clock: Callable[[], float]
    high: float = 1.0
    low: float = 0.6
    slope_alpha: float = 0.3
    _groups: dict[str, _GroupTimers] = field(default_factory=dict, repr=False)
    _pools: dict[str, _PoolTimers] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError("scaler band needs 0 < low < high")

    def decide(self, pools: Sequence[PoolLoad]) -> list[ScaleDecision]:
        """One decision per pool, in input order."""
        now = self.clock()
        target = {p.name: p.replicas for p in pools}
        reasons = {p.name: "hold" for p in pools}
        for p in pools:  # bounds first: they are not subject to delays
            lo, hi = p.limits.min_replicas, p.limits.max_replicas
            if p.replicas < lo or p.replicas > hi:
                target[p.name] = min(max(p.replicas, lo), hi)
                reasons[p.name] = f"bound [{lo}, {hi}]"
        groups: dict[str, list[PoolLoad]] = {}
        for p in pools:
            if p.limits.efficiency:
                groups.setdefault(p.group, []).append(p)
            elif reasons[p.name] == "hold":
                target[p.name], reasons[p.name] = self._alone(p, now)
        for name, members in groups.items():
            self._group(name, members, now, target, reasons)
        return [ScaleDecision(p.name, target[p.name], target[p.name] - p.replicas, reasons[p.name]) for p in pools]

    def _alone(self, p: PoolLoad, now: float) -> tuple[int, str]:
        """Ray Serve's default rule: ceil(load / target), applied once it held for the delay."""
        lim, t = p.limits, self._pools.setdefault(p.name, _PoolTimers())
        want = min(max(math.ceil(p.load / lim.target_ongoing), lim.min_replicas), lim.max_replicas)
        if want == p.replicas:
            t.want = None
            return p.replicas, "hold"
        if t.want is None or (t.want > p.replicas) != (want > p.replicas):
            t.want, t.since = want, now
        delay = lim.upscale_delay_s if want > p.replicas else lim.downscale_delay_s
        if now - t.since < delay:
            return p.replicas, f"waiting {delay - (now - t.since):.0f} s for {want}"
        t.want = None
        return want, f"load {p.load:.0f} / target {lim.target_ongoing:g} per replica"

    def _group(self, name: str, pools: list[PoolLoad], now: float,
               target: dict[str, int], reasons: dict[str, str]) -> None:
        g = self._groups.setdefault(name, _GroupTimers())
        load = sum(p.load for p in pools)
        capacity = sum(target[p.name] * p.limits.target_ongoing for p in pools)
        if g.last_t is not None and now > g.last_t:
            rate = (load - g.last_load) / (now - g.last_t)
            g.slope += self.slope_alpha * (rate - g.slope)
        g.last_load, g.last_t = load, now
        by_efficiency = sorted(pools, key=lambda p: (not p.meets_slo, p.total_j_per_token))
        growable = [p for p in by_efficiency if target[p.name] < p.limits.max_replicas]
        horizon = growable[0].limits.startup_s if growable else 0.0
        projected = load + max(g.slope, 0.0) * horizon
        if projected > self.high * capacity and growable:
            g.under_since = None
            if g.over_since is None:
                g.over_since = now
            if now - g.over_since < growable[0].limits.upscale_delay_s:
                return
            g.over_since = None
            need = projected / self.high - capacity
            for p in growable:
                if need <= 0:
                    break
                add = min(math.ceil(need / p.limits.target_ongoing), p.limits.max_replicas - target[p.name])
                target[p.name] += add
                need -= add * p.limits.target_ongoing
                reasons[p.name] = (f"up {add}: group load {projected:.0f} (projected over {horizon:.0f} s start-up) "
                                   f"> {self.high:g} × capacity {capacity:.0f}; {p.total_j_per_token:.3f} J/tok idle included")
                self._pools.setdefault(p.name, _PoolTimers()).last_up = now
            return
        g.over_since = None
        if load >= self.low * capacity or any(p.starting for p in pools):
            g.under_since = None
            return
        if g.under_since is None:
            g.under_since = now
        mid = (self.low + self.high) / 2
        for p in reversed(by_efficiency):  # least efficient first
            lim, n = p.limits, target[p.name]
            if n <= lim.min_replicas or now - g.under_since < max(lim.downscale_delay_s, lim.startup_s):
                continue
            if now - self._pools.setdefault(p.name, _PoolTimers()).last_up < lim.downscale_delay_s:
                continue
            idle_one = p.load <= self.low * (n - 1) * lim.target_ongoing
            if idle_one and load <= mid * (capacity - lim.target_ongoing):
                target[p.name] = n - 1
                reasons[p.name] = (f"down 1: group load {load:.0f} < {self.low:g} × capacity {capacity:.0f}; "
                                   f"least efficient with an idle replica ({p.total_j_per_token:.3f} J/tok, "
                                   f"{p.idle_watts:.0f} W idle)")
                g.under_since = now
                return
