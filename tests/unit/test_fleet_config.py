"""The fleet file: the embedded default loads, bad files name the bad key."""

from __future__ import annotations

import pytest

from fleet.config import FleetConfigError, load_fleet, parse_fleet
from workers.serve_env import REPLICA_ENV

POOL = {"name": "a", "hardware": "h100", "engine": "emulated", "model": "llama-3.1-8b", "models": ["m"], "engine_args": {"max_batch": 8}}


def test_default_fleet_has_three_emulated_hardware_types_and_a_real_vllm_pool():
    fleet, base = load_fleet(None)
    assert base is None
    emulated = [p for p in fleet.pools if p.engine == "emulated"]
    assert len({p.hardware for p in emulated}) >= 3
    assert len({m for p in emulated for m in p.models}) == 1
    real = [p for p in fleet.pools if p.engine == "vllm"]
    assert real and real[0].model == "tiny-llama" and real[0].hardware == "cpu"


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"hardware": "h1000"}, "pools.0.hardware"),
        ({"engine": "tensorrt"}, "pools.0.engine"),
        ({"replicas": 0}, "pools.0.replicas"),
        ({"colour": "red"}, "pools.0.colour: unknown key"),
        ({"resources": {"NPU": 1}}, "Huawei Ascend"),
        ({"name": "Bad Name"}, "pools.0.name"),
        ({"model": "llama-99b"}, "llama-99b"),
        ({"models": []}, "pools.0.models"),
    ],
)
def test_bad_pool_names_the_key(change, needle):
    with pytest.raises(FleetConfigError) as info:
        parse_fleet({"pools": [{**POOL, **change}]}, "f.yaml")
    assert needle in str(info.value)
    assert str(info.value).startswith("f.yaml: ")


def test_duplicate_pool_names_rejected():
    with pytest.raises(FleetConfigError, match="appears twice"):
        parse_fleet({"pools": [POOL, POOL]})


def test_unknown_top_level_and_gateway_keys(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("pools: []\ngateway: {prot: 1}\n")
    with pytest.raises(FleetConfigError) as info:
        load_fleet(path)
    assert "gateway.prot: unknown key" in str(info.value)


def test_yaml_syntax_error_is_reported(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("pools: [\n")
    with pytest.raises(FleetConfigError, match="not valid YAML"):
        load_fleet(path)


def test_ray_actor_options_map_resources():
    fleet = parse_fleet({"pools": [{**POOL, "resources": {"GPU": 1, "FURIOSA": 2}, "env": {"A": "1"}}]})
    opts = fleet.pools[0].ray_actor_options()
    assert opts == {"num_cpus": 0, "num_gpus": 1, "resources": {"FURIOSA": 2},
                    "runtime_env": {"env_vars": {**REPLICA_ENV, "A": "1"}}}  # hetserve's Serve settings, then its own


def test_bare_yaml_off_turns_tracing_off(tmp_path):
    import yaml

    data = yaml.safe_load("tracing: {exporter: off}\n")
    fleet = parse_fleet({**data, "pools": [POOL]})
    assert fleet.tracing.exporter == "off"


@pytest.mark.parametrize(
    "engine_args,needle",
    [
        ({"max_batch": 0}, "pools.0.engine_args.max_batch: Input should be greater than or equal to 1"),
        ({"max_batch": "lots"}, "pools.0.engine_args.max_batch: Input should be a valid integer"),
        ({"max_batches": 8}, "pools.0.engine_args.max_batches: unknown key"),
        ({"max_batch": 8, "time_scale": 0}, "pools.0.engine_args.time_scale"),
        ({"max_batch": 8, "max_model_len": -1}, "pools.0.engine_args.max_model_len"),
    ],
)
def test_bad_emulated_engine_args_name_the_key(engine_args, needle):
    with pytest.raises(FleetConfigError) as info:
        parse_fleet({"pools": [{**POOL, "engine_args": engine_args}]}, "f.yaml")
    assert needle in str(info.value)


def test_emulated_max_batch_beyond_compiled_buckets_is_rejected_at_load():
    pool = {**POOL, "hardware": "rngd", "engine_args": {"max_batch": 10_000}}
    with pytest.raises(FleetConfigError, match=r"pools\.0\.engine_args\.max_batch: 10000 exceeds .* bucket"):
        parse_fleet({"pools": [pool]})


def test_emulated_max_batch_defaults_to_max_ongoing_requests_capped_by_buckets():
    from workers.hardware import get_hardware

    largest = get_hardware("rngd").batch_buckets[-1]
    fleet = parse_fleet({"pools": [
        {**POOL, "name": "free", "engine_args": {}, "max_ongoing_requests": 48},
        {**POOL, "name": "bucketed", "hardware": "rngd", "engine_args": {}, "max_ongoing_requests": largest * 4},
    ]})
    free, bucketed = fleet.pools
    assert free.engine_args == {}  # the file's own keys only; the default is filled in for the engine
    assert free.emulated_engine_args() == {"max_batch": 48}
    assert bucketed.emulated_engine_args() == {"max_batch": largest}


def test_every_emulated_pool_that_loads_builds_its_engine():
    """What passes the fleet check must construct (today's crash: a missing max_batch)."""
    from workers.adapters import make_engine

    fleet = parse_fleet({"pools": [{**POOL, "engine_args": {}}, {**POOL, "name": "b", "engine_args": {"time_scale": 2}}]})
    for pool in fleet.pools:
        engine = make_engine(pool)
        assert engine.time_scale == pool.engine_args.get("time_scale", 1.0)


@pytest.mark.parametrize("engine", ["vllm", "furiosa"])
def test_real_engines_reject_model_in_engine_args(engine):
    pool = {**POOL, "engine": engine, "model": "tiny-llama", "engine_args": {"model": "other"}}
    with pytest.raises(FleetConfigError, match=r"pools\.0\.engine_args: 'model' is set by the pool's 'model' key"):
        parse_fleet({"pools": [pool]})


def test_furiosa_devices_must_be_a_string():
    pool = {**POOL, "engine": "furiosa", "model": "x", "engine_args": {"devices": 0}}
    with pytest.raises(FleetConfigError, match=r"pools\.0\.engine_args: devices"):
        parse_fleet({"pools": [pool]})
