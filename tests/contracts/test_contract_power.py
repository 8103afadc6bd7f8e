"""Power meters against the real bindings: furiosa-smi (both) in .venv-furiosa, NVML here."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.contracts


@pytest.fixture(scope="module")
def smi(probe):
    return probe("furiosa_smi", "furiosa")


@pytest.fixture(scope="module")
def nvml(probe):
    return probe("nvml")


def test_smi_versions_checked(smi):
    assert smi["versions"] == {"furiosa-smi": "2026.4.0", "furiosa-smi-py": "2026.1.2"}


def test_smi_2026_4_lists_devices_without_init_and_names_them(smi):
    binding = smi["bindings"]["furiosa_smi"]
    assert not binding["has_init"]
    assert binding["list_devices"] == {}
    assert binding["list_devices_first_call"] == {"value": "[]"}
    assert list(binding["Device"]["device_name"]) == ["self"]
    assert list(binding["Device"]["power_consumption"]) == ["self"]


def test_smi_py_needs_init_before_listing(smi):
    binding = smi["bindings"]["furiosa_smi_py"]
    assert binding["list_devices_first_call"]["error"]["type"] == "builtins.RuntimeError"
    assert binding["init"] == {"value": "None"}
    assert binding["list_devices_after_init"] == {"value": "[]"}
    assert list(binding["Device"]["device_info"]) == ["self"]
    assert list(binding["DeviceInfo"]["index"]) == ["self"]
    assert list(binding["Device"]["power_consumption"]) == ["self"]


@pytest.mark.parametrize("binding", ["furiosa_smi", "furiosa_smi_py"])
def test_smi_meter_without_an_npu_is_a_start_error(smi, binding):
    assert smi["meter"][binding]["error"] == {
        "type": "workers.errors.EngineStartError",
        "message": "power source 'furiosa-smi': no NPU found (is the driver loaded?)",
    }


def test_nvml_version_checked(nvml):
    assert nvml["versions"]["nvidia-ml-py"] is not None


def test_nvml_calls_the_meter_uses(nvml):
    calls = nvml["calls"]
    for name in ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount"):
        assert calls[name] == {}
    assert list(calls["nvmlDeviceGetHandleByIndex"]) == ["index"]
    assert list(calls["nvmlDeviceGetHandleByUUID"]) == ["uuid"]
    assert nvml["uuid_str_converted"]  # a "GPU-..." str is encoded for the C call
    for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage"):
        assert list(calls[name]) == ["handle"]
    assert nvml["not_supported_is_NVMLError"]  # the counter fallback catches NVMLError


def test_nvml_readings_are_the_c_values_unscaled(nvml):
    # So the units are nvml.h's: a 64-bit millijoule counter and milliwatts.
    readings = nvml["readings"]
    assert readings["nvmlDeviceGetTotalEnergyConsumption"] == {"returned": nvml["raw"], "c_bytes": 8}
    assert readings["nvmlDeviceGetPowerUsage"] == {"returned": nvml["raw"], "c_bytes": 4}


def test_nvml_without_a_driver_is_a_start_error(nvml):
    init = nvml["without_driver"]["init"]
    if init == "initialised":
        pytest.skip("an NVIDIA driver is loaded here: the no-driver path is not exercised")
    assert init["is_NVMLError"]
    assert nvml["without_driver"]["meter"]["type"] == "workers.errors.EngineStartError"
