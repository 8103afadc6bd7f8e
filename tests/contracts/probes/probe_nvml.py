"""nvidia-ml-py (``pynvml``) as NvmlMeter uses it (run in the main environment).

Reports the calls' signatures, what ``nvmlInit`` and the meter do on a host
without the NVIDIA driver, and whether the binding scales the C library's
readings: each reading call is run against a stand-in for the library
function that writes a known raw value, so the units are the C API's
(``nvml.h``: energy in mJ, power in mW).
"""

from __future__ import annotations

import ctypes

from _describe import emit, error, params, version

CALLS = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetPowerUsage",
)
RAW = 123_456_789


def without_driver(pynvml) -> dict:
    from workers.power import NvmlMeter

    found = {}
    try:
        pynvml.nvmlInit()
        found["init"] = "initialised"
    except Exception as exc:
        found["init"] = error(exc) | {"is_NVMLError": isinstance(exc, pynvml.NVMLError)}
    try:
        NvmlMeter(devices=[0])
        found["meter"] = "built"
    except Exception as exc:
        found["meter"] = error(exc)
    return found


def raw_readings(pynvml) -> dict:
    """Each reading call, fed RAW by a stand-in C function: what comes back, and the C output size."""
    c_types = {}

    def c_function(name):
        def fn(*args):
            out = args[-1]._obj  # the byref() output argument
            c_types[name] = ctypes.sizeof(out)
            out.value = RAW
            return pynvml.NVML_SUCCESS

        return fn

    pynvml._nvmlGetFunctionPointer = c_function
    handle = pynvml.c_nvmlDevice_t()
    return {
        name: {"returned": getattr(pynvml, name)(handle), "c_bytes": c_types[name]}
        for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage")
    }


def main() -> None:
    import pynvml

    found = {
        "versions": {"nvidia-ml-py": version("nvidia-ml-py")},
        "raw": RAW,
        "calls": {name: params(getattr(pynvml, name)) for name in CALLS},
        "uuid_str_converted": hasattr(pynvml.nvmlDeviceGetHandleByUUID, "__wrapped__"),
        "not_supported_is_NVMLError": issubclass(pynvml.NVMLError_NotSupported, pynvml.NVMLError),
        "without_driver": without_driver(pynvml),
        "readings": raw_readings(pynvml),
    }
    emit(found)


if __name__ == "__main__":
    main()
