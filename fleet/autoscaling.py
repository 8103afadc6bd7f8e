"""A pool's autoscaling figures from its spec and profile: what ``routing.scaler`` needs.

Shared by the simulator and the live Serve policy so both scale on the same
numbers. The figures are read off the pool's efficiency profile (modelled
from the hardware model, or measured by ``hetserve calibrate``) at the
target load and a representative sequence length:

- ``target_ongoing``: the fleet's ``target_ongoing_requests``, else
  ``TARGET_SHARE`` of the largest batch bucket (up to ``max_ongoing_requests``)
  whose TTFT and TPOT meet the routing SLOs: the planner's utilisation, and
  room below the pool's admission limit, past which the gateway spills or
  refuses requests the scaler would then never see as load;
- ``j_per_token`` (attributed, above idle) and ``tokens_per_s`` (one replica)
  in that cell; ``meets_slo``: some batch meets the SLOs at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fleet.profiles import fleet_profiles
from routing.config import SloConfig
from routing.profile import EfficiencyProfile, ProfileBook
from routing.scaler import PoolFigures, ScalerLimits
from workers.hardware import get_hardware
from workers.spec import PoolSpec

#: Share of the SLO-feasible batch a replica is scaled to carry (``plan.milp``'s utilisation).
TARGET_SHARE = 0.8
#: Sequence length (prompt + output) the figures are read at when none is given.
DEFAULT_SEQ_LEN = 1024


def _meets(cell, slo: SloConfig) -> bool:
    if cell is None or not cell.feasible or not cell.tpot_ms:
        return False
    return ((slo.ttft_ms is None or (cell.ttft_ms or 0) <= slo.ttft_ms)
            and (slo.tpot_ms is None or cell.tpot_ms <= slo.tpot_ms))


def pool_figures(spec: PoolSpec, profile: EfficiencyProfile | None, slo: SloConfig,
                 seq_len: int = DEFAULT_SEQ_LEN) -> PoolFigures:
    """Figures of an autoscaled pool (``spec.autoscaling`` set).

    Without a profile (a real engine before calibration) the target defaults to
    half of ``max_ongoing_requests`` and the pool ranks last for efficiency.
    """
    a = spec.autoscaling
    if a is None:
        raise ValueError(f"pool {spec.name} has no autoscaling")
    idle = get_hardware(spec.hardware).idle_watts_replica
    best = None
    if profile is not None:
        for b in profile.batch_buckets:
            if b > spec.max_ongoing_requests:
                break
            cell = profile.lookup(b, seq_len)
            if _meets(cell, slo):
                best = cell
    feasible = min(best.batch, spec.max_ongoing_requests) if best else spec.max_ongoing_requests // 2
    target = a.target_ongoing_requests or max(1, int(TARGET_SHARE * feasible))
    cell = profile.lookup(int(target), seq_len) if profile is not None else None
    usable = cell is not None and cell.feasible and cell.throughput_tok_s
    limits = ScalerLimits(a.min_replicas, a.max_replicas, float(target), a.upscale_delay_s,
                          a.downscale_delay_s, a.startup_s, a.efficiency)
    return PoolFigures(
        spec.name, ",".join(sorted(spec.models)), limits,
        j_per_token=float(cell.j_per_token or 0.0) if usable else 0.0,
        tokens_per_s=float(cell.throughput_tok_s) if usable else 0.0,
        idle_watts=idle, meets_slo=best is not None,
    )


def scaling_profiles(pools: list[PoolSpec], directory: str | Path | None) -> dict[str, EfficiencyProfile]:
    """Modelled profiles, replaced by measured ones (``hetserve calibrate``) found in ``directory``."""
    profiles = fleet_profiles(pools)
    if directory is not None and Path(directory).is_dir():
        book = ProfileBook.load_dir(directory)
        profiles.update({name: book[name] for name in book if name in {p.name for p in pools}})
    return profiles


def fleet_figures(pools: list[PoolSpec], profiles: Mapping[str, EfficiencyProfile], slo: SloConfig,
                  seq_len: int = DEFAULT_SEQ_LEN) -> dict[str, PoolFigures]:
    """Figures of every autoscaled pool, by name."""
    return {p.name: pool_figures(p, profiles.get(p.name), slo, seq_len) for p in pools if p.autoscaling}


#: Where Ray Serve imports the application-level policy from (``workers.autoscaling``).
POLICY_IMPORT_PATH = "workers.autoscaling:EfficiencyPolicy"
#: Serve's default rule on the replicas' reported sequences, for pools it scales alone.
DEPLOYMENT_POLICY_IMPORT_PATH = "workers.autoscaling:sequences_policy"


def app_policy_driven(pools: list[PoolSpec]) -> bool:
    """True when the efficiency-aware scaler drives the fleet (some pool asks for it)."""
    return any(p.autoscaling and p.autoscaling.efficiency for p in pools)


def serve_autoscaling_config(spec: PoolSpec, figures: PoolFigures, *, app_policy: bool) -> dict:
    """Ray Serve's ``autoscaling_config`` for a pool.

    Under the application-level policy (``app_policy``) Serve's own delays are
    0: Serve applies a deployment's delays on top of any policy's decision, and
    ``routing.scaler`` already waits out the fleet file's. Otherwise the pool
    gets Serve's default rule on the sequences its replicas report
    (``workers.autoscaling.sequences_policy``).
    """
    a = spec.autoscaling
    policy = {} if app_policy else {"policy": {"policy_function": DEPLOYMENT_POLICY_IMPORT_PATH}}
    return {
        **policy,
        "min_replicas": a.min_replicas,
        "max_replicas": a.max_replicas,
        "initial_replicas": spec.start_replicas,
        "target_ongoing_requests": figures.limits.target_ongoing,
        "upscale_delay_s": 0.0 if app_policy else a.upscale_delay_s,
        "downscale_delay_s": 0.0 if app_policy else a.downscale_delay_s,
    }


def serve_app_policy(figures: Mapping[str, PoolFigures]) -> dict:
    """The application's ``autoscaling_policy`` entry of a Serve config."""
    return {"policy_function": POLICY_IMPORT_PATH,
            "policy_kwargs": {"pools": {name: f.to_dict() for name, f in figures.items()}}}
