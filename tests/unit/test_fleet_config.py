"""The fleet file: the embedded default loads, bad files name the bad key."""

from __future__ import annotations

import pytest

from fleet.config import FleetConfigError, load_fleet, parse_fleet

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
    assert opts == {"num_cpus": 0, "num_gpus": 1, "resources": {"FURIOSA": 2}, "runtime_env": {"env_vars": {"A": "1"}}}


def test_bare_yaml_off_turns_tracing_off(tmp_path):
    import yaml

    data = yaml.safe_load("tracing: {exporter: off}\n")
    fleet = parse_fleet({**data, "pools": [POOL]})
    assert fleet.tracing.exporter == "off"
