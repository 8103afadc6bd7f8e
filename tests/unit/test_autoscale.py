"""Autoscaling: the scaler's decisions on a fake clock, the fleet file's
``autoscaling`` key, its Ray Serve mapping and policy, and start-up in the simulator."""

from __future__ import annotations

import pytest
import yaml
from ray.serve._private.common import DeploymentID
from ray.serve.autoscaling_policy import _apply_app_level_autoscaling_config, _apply_autoscaling_config
from ray.serve.config import AutoscalingConfig, AutoscalingContext
from ray.serve.schema import ServeDeploySchema

from deploy.serve_config import serve_config
from fleet.autoscaling import DEPLOYMENT_POLICY_IMPORT_PATH, POLICY_IMPORT_PATH
from fleet.config import FleetConfigError, parse_fleet
from routing.config import SloConfig
from routing.scaler import PoolLoad, Scaler, ScalerLimits
from sim.autoscale import ReplicaReady, SimAutoscaler
from sim.pools import build_pools
from sim.run import simulate
from sim.workload import Workload
from fleet.autoscaling import fleet_figures
from workers.autoscaling import SEQUENCES_METRIC, EfficiencyPolicy, sequences_policy

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
LIMITS = ScalerLimits(min_replicas=1, max_replicas=3, target_ongoing=10, upscale_delay_s=10,
                      downscale_delay_s=60, startup_s=0)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def pools(eff: tuple[int, int, float], ineff: tuple[int, int, float], *, eff_meets_slo: bool = True):
    """Two pools of one group: (ready, starting, load) each; 'eff' spends less per token, idle included."""
    return [
        PoolLoad("eff", "m", *eff, j_per_token=0.1, tokens_per_s=1000, idle_watts=50, meets_slo=eff_meets_slo,
                 limits=LIMITS),
        PoolLoad("ineff", "m", *ineff, j_per_token=0.3, tokens_per_s=1000, idle_watts=300, meets_slo=True,
                 limits=LIMITS),
    ]


def deltas(decisions) -> dict[str, int]:
    return {d.pool: d.delta for d in decisions}


def test_scaler_grows_the_efficient_pool_first_then_sheds_the_least_efficient():
    clock = Clock()
    s = Scaler(clock=clock)
    assert deltas(s.decide(pools((1, 0, 5), (1, 0, 5)))) == {"eff": 0, "ineff": 0}
    clock.t = 5  # load rises past the group's capacity (20): the up delay starts
    assert deltas(s.decide(pools((1, 0, 20), (1, 0, 15)))) == {"eff": 0, "ineff": 0}
    clock.t = 15  # held for the up delay: the efficient pool grows, the other does not
    d = deltas(s.decide(pools((1, 0, 20), (1, 0, 15))))
    assert d["eff"] >= 1 and d["ineff"] == 0
    clock.t = 20  # the replica asked for is starting: counted as capacity to come, not asked twice
    assert deltas(s.decide(pools((1, 1, 15), (1, 0, 15)))) == {"eff": 0, "ineff": 0}
    clock.t = 60  # more load than the efficient pool's maximum: the next pool grows too
    s.decide(pools((3, 0, 60), (1, 0, 20)))
    clock.t = 75
    d = deltas(s.decide(pools((3, 0, 60), (1, 0, 20))))
    assert d["eff"] == 0 and d["ineff"] >= 1
    # Load falls to almost nothing: nothing is shed before the down delay.
    clock.t = 100
    assert deltas(s.decide(pools((3, 0, 2), (2, 0, 0)))) == {"eff": 0, "ineff": 0}
    clock.t = 150
    assert deltas(s.decide(pools((3, 0, 2), (2, 0, 0)))) == {"eff": 0, "ineff": 0}
    clock.t = 161  # held 61 s: one replica of the least efficient pool goes, then the timer restarts
    assert deltas(s.decide(pools((3, 0, 2), (2, 0, 0)))) == {"eff": 0, "ineff": -1}
    clock.t = 200
    assert deltas(s.decide(pools((3, 0, 2), (1, 0, 0)))) == {"eff": 0, "ineff": 0}
    clock.t = 222  # the least efficient is at its minimum: the efficient pool sheds next
    assert deltas(s.decide(pools((3, 0, 2), (1, 0, 0)))) == {"eff": -1, "ineff": 0}
    for t in range(300, 1000, 61):  # never below the minimum
        clock.t = t
        for d in s.decide(pools((1, 0, 0), (1, 0, 0))):
            assert d.replicas >= 1


def test_scaler_skips_a_pool_that_cannot_meet_the_slo_and_respects_the_up_cooldown():
    clock = Clock()
    s = Scaler(clock=clock)
    s.decide(pools((1, 0, 25), (1, 0, 0), eff_meets_slo=False))
    clock.t = 9.9  # not yet held for upscale_delay_s
    assert deltas(s.decide(pools((1, 0, 25), (1, 0, 0), eff_meets_slo=False))) == {"eff": 0, "ineff": 0}
    clock.t = 10
    d = deltas(s.decide(pools((1, 0, 25), (1, 0, 0), eff_meets_slo=False)))
    assert d["ineff"] >= 1 and d["eff"] == 0


def test_scaler_does_not_shed_a_pool_grown_within_its_down_delay():
    clock = Clock()
    s = Scaler(clock=clock)
    s.decide(pools((1, 0, 40), (1, 0, 0)))
    clock.t = 10
    assert deltas(s.decide(pools((1, 0, 40), (1, 0, 0))))["eff"] >= 1  # grown at t = 10
    clock.t = 50  # load gone at once; 'ineff' is at its minimum, 'eff' was grown 40 s ago
    s.decide(pools((3, 0, 0), (1, 0, 0)))
    clock.t = 69  # 'eff' held under the band for its delay, but its last growth is 59 s old
    assert deltas(s.decide(pools((3, 0, 0), (1, 0, 0)))) == {"eff": 0, "ineff": 0}
    clock.t = 111
    assert deltas(s.decide(pools((3, 0, 0), (1, 0, 0))))["eff"] == -1


def test_rising_load_is_projected_over_the_startup_time():
    slow = ScalerLimits(1, 3, 10, upscale_delay_s=0, downscale_delay_s=60, startup_s=30)
    p = lambda load: [PoolLoad("a", "m", 2, 0, load, 0.1, 100, 10, True, slow)]  # noqa: E731
    clock = Clock()
    s = Scaler(clock=clock)
    for t, load in ((0, 8), (5, 10), (10, 12), (15, 14)):  # rising, still under capacity (20)
        clock.t = t
        d = s.decide(p(load))[0]
    assert d.delta == 1 and "projected" in d.reason
    steady = Scaler(clock=clock)
    for t in (0, 5, 10, 15):  # the same load, flat: nothing to start
        clock.t = t
        assert steady.decide(p(14))[0].delta == 0


def test_pool_without_efficiency_follows_serves_rule_alone():
    clock = Clock()
    s = Scaler(clock=clock)
    alone = ScalerLimits(1, 5, 10, upscale_delay_s=10, downscale_delay_s=30, startup_s=0, efficiency=False)
    p = lambda n, load: [PoolLoad("a", "m", n, 0, load, 0.1, 100, 10, True, alone)]  # noqa: E731
    assert s.decide(p(1, 35))[0].delta == 0
    clock.t = 10
    assert s.decide(p(1, 35))[0].replicas == 4  # ceil(35 / 10)
    clock.t = 20
    assert s.decide(p(4, 0))[0].delta == 0
    clock.t = 50
    assert s.decide(p(4, 0))[0].replicas == 1


# The fleet file's key.

POOL = {"name": "h100", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL]}


@pytest.mark.parametrize("autoscaling, where", [
    ({"min_replicas": 3, "max_replicas": 2}, "pools.0.autoscaling.max_replicas: 2 is below min_replicas"),
    ({"max_replicas": 2, "upscale_delay": 5}, "pools.0.autoscaling.upscale_delay: unknown key"),
    ({"max_replicas": 2, "startup_s": -1}, "pools.0.autoscaling.startup_s:"),
    ({"max_replicas": 2, "target_ongoing_requests": 999}, "autoscaling.target_ongoing_requests: 999 exceeds"),
])
def test_bad_autoscaling_names_the_key(autoscaling, where):
    with pytest.raises(FleetConfigError, match=where.replace(".", r"\.")):
        parse_fleet({"pools": [{**POOL, "autoscaling": autoscaling}]})


def test_replicas_is_the_start_count_within_the_bounds_and_survives_a_round_trip():
    fleet = parse_fleet({"pools": [{**POOL, "replicas": 5, "autoscaling": {"min_replicas": 2, "max_replicas": 3}},
                                   {**POOL, "name": "b", "autoscaling": {"min_replicas": 0, "max_replicas": 3}}]})
    assert [p.start_replicas for p in fleet.pools] == [3, 1]
    assert parse_fleet(fleet.model_dump()) == fleet  # what replicas and the gateway get, validated again


# Ray Serve's side.

def _fleet(efficiency: bool):
    return parse_fleet({
        "routing": {"slo": {"ttft_ms": 2000, "tpot_ms": 100}},
        "pools": [
            {**POOL, "autoscaling": {"min_replicas": 1, "max_replicas": 4, "upscale_delay_s": 20,
                                     "downscale_delay_s": 300, "efficiency": efficiency}},
            {**POOL, "name": "rngd", "hardware": "rngd", "max_ongoing_requests": 64,
             "autoscaling": {"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 16,
                             "efficiency": efficiency}},
            {**POOL, "name": "fixed", "replicas": 2},
        ],
    })


def test_serve_config_maps_autoscaling_and_carries_the_efficiency_policy():
    doc = serve_config(_fleet(efficiency=True))
    (app,) = ServeDeploySchema.model_validate(doc).applications
    deps = {d["name"]: d for d in doc["applications"][0]["deployments"]}
    h100, rngd = deps["h100"]["autoscaling_config"], deps["rngd"]["autoscaling_config"]
    assert "num_replicas" not in deps["h100"] and deps["fixed"]["num_replicas"] == 2
    assert (h100["min_replicas"], h100["max_replicas"], h100["initial_replicas"]) == (1, 4, 1)
    assert (rngd["min_replicas"], rngd["max_replicas"], rngd["target_ongoing_requests"]) == (0, 2, 16)
    assert 1 <= h100["target_ongoing_requests"] < 256  # derived from the SLO-feasible batch, below the admission limit
    assert h100["upscale_delay_s"] == h100["downscale_delay_s"] == 0  # the scaler keeps the fleet's delays
    AutoscalingConfig.model_validate(h100)
    assert app.autoscaling_policy["policy_function"] == POLICY_IMPORT_PATH
    pools = app.autoscaling_policy["policy_kwargs"]["pools"]
    assert set(pools) == {"h100", "rngd"} and pools["h100"]["limits"]["upscale_delay_s"] == 20
    yaml.safe_dump(doc)  # plain data all the way down


def test_without_efficiency_serves_own_rule_keeps_the_delays():
    doc = serve_config(_fleet(efficiency=False))
    app = doc["applications"][0]
    assert "autoscaling_policy" not in app
    h100 = next(d for d in app["deployments"] if d["name"] == "h100")["autoscaling_config"]
    assert (h100["upscale_delay_s"], h100["downscale_delay_s"]) == (20, 300)
    assert h100["policy"] == {"policy_function": DEPLOYMENT_POLICY_IMPORT_PATH}
    ServeDeploySchema.model_validate(doc)


def test_serves_rule_scales_on_the_sequences_replicas_report():
    """Serve's default rule reads only the requests Serve counts (the gateway's stats polls)."""
    from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

    app = serve_config(_fleet(efficiency=False))["applications"][0]
    config = next(d for d in app["deployments"] if d["name"] == "h100")["autoscaling_config"]
    # Serve's delays run on the wall clock: without them the wrapper decides at once.
    config = {**config, "upscale_delay_s": 0, "downscale_delay_s": 0}
    target = config["target_ongoing_requests"]
    busy = _context("h100", config, 1, 1, 3 * target, 1000.0)
    assert _apply_autoscaling_config(replica_queue_length_autoscaling_policy)(busy)[0] == 1
    assert _apply_autoscaling_config(sequences_policy)(busy)[0] == 3
    idle = _context("h100", config, 3, 3, 0.0, 1000.0)
    assert _apply_autoscaling_config(sequences_policy)(idle)[0] == config["min_replicas"]


def _context(name: str, config: dict, running: int, target: int, sequences: float, now: float) -> AutoscalingContext:
    """Serve's context as the HTTP data path leaves it: requests counted by Serve are only the
    gateway's stats polls (0.2 here); the load is in the replicas' reported sequences."""
    dep = DeploymentID(name=name, app_name="hetserve")
    per_replica = {f"r{i}": sequences / running for i in range(running)} if running else {}
    return AutoscalingContext(
        deployment_id=dep, deployment_name=name, app_name="hetserve", current_num_replicas=running,
        target_num_replicas=target, running_replicas=[], total_num_requests=0.2, total_queued_requests=0.0,
        aggregated_metrics={SEQUENCES_METRIC: per_replica}, raw_metrics={}, capacity_adjusted_min_replicas=config["min_replicas"],
        capacity_adjusted_max_replicas=config["max_replicas"], policy_state={}, last_scale_up_time=None,
        last_scale_down_time=None, current_time=now, config=AutoscalingConfig.model_validate(config),
    )


def test_efficiency_policy_runs_under_serves_app_level_wrapper():
    doc = serve_config(_fleet(efficiency=True))
    app = doc["applications"][0]
    configs = {d["name"]: d["autoscaling_config"] for d in app["deployments"] if "autoscaling_config" in d}
    policy = _apply_app_level_autoscaling_config(EfficiencyPolicy(**app["autoscaling_policy"]["policy_kwargs"]))
    target = configs["h100"]["target_ongoing_requests"]
    decisions = {}
    for now in (1000.0, 1030.0):  # the load holds past the 20 s up delay
        contexts = {c.deployment_id: c for c in (
            _context("h100", configs["h100"], 1, 1, 3 * target, now),
            _context("rngd", configs["rngd"], 0, 0, 0.0, now),
        )}
        decisions, state = policy(contexts)
    by_name = {dep.name: n for dep, n in decisions.items()}
    assert set(state) == set(decisions)
    assert by_name["h100"] > 1 or by_name["rngd"] > 0  # grew where the scaler ranks best
    assert by_name["h100"] <= 4 and by_name["rngd"] <= 2


# The simulator.

def test_sim_replica_serves_only_after_its_startup_and_draws_idle_while_starting():
    fleet = _fleet(efficiency=True)
    w = Workload.synthetic(MODEL, 10, 1.0, seed=1)
    (h100, _rngd) = build_pools([p for p in fleet.pools if p.autoscaling], w.models)
    figures = fleet_figures([h100.spec], {"h100": h100.profile}, SloConfig(ttft_ms=2000, tpot_ms=100))
    clock = Clock()
    auto = SimAutoscaler(Scaler(clock=clock), figures)
    startup = figures["h100"].limits.startup_s
    h100.sent_total.in_flight = int(5 * figures["h100"].limits.target_ongoing)

    class State:  # what a tick reads
        pools = [h100]
        workload = w

    for t in (0.0, 20.0):  # past the up delay
        clock.t = t
        caused = auto.tick(State, t)
    ready = [e for e in caused if isinstance(e, ReplicaReady)]
    assert ready and all(e.time == 20.0 + startup for e in ready)
    assert len(h100.replicas) == 1 and h100.starting == len(ready)
    assert h100.capacity == h100.spec.max_ongoing_requests  # starting replicas take no requests
    before = h100.replica_seconds(0.0, 20.0 + startup)
    for e in ready:
        e.handle(State)
    assert len(h100.replicas) == 1 + len(ready) and h100.starting == 0
    assert before == pytest.approx(20.0 + startup * (1 + len(ready)))  # idle paid while starting


def test_simulated_autoscaled_fleet_scales_and_pays_idle_only_while_up():
    fleet = _fleet(efficiency=True)
    pools = [p for p in fleet.pools if p.autoscaling]
    w = Workload.synthetic(MODEL, 1500, 25.0, seed=3).with_default_slo(2000, 100)
    r = simulate(pools, w, fleet.routing, label="auto")
    by = {p.name: p for p in r.pools}
    assert 1.0 <= by["h100"].mean_replicas <= 4.0 and by["rngd"].mean_replicas <= 2.0
    assert r.completed > 0.9 * r.requests


def test_pool_replica_reports_its_running_and_waiting_sequences_to_serves_autoscaler():
    from types import SimpleNamespace

    from workers.engine import EngineStats
    from workers.pool import PoolReplica

    replica = SimpleNamespace(engine=SimpleNamespace(stats=lambda: EngineStats(running=5, waiting=3)))
    assert PoolReplica.record_autoscaling_stats(replica) == {SEQUENCES_METRIC: 8.0}
