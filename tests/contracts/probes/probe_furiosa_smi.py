"""Both furiosa-smi bindings as FuriosaSmiMeter uses them (run in .venv-furiosa).

Reports each binding's calls and how it answers on a host without an NPU,
then builds the meter against each binding in turn, the other hidden.
"""

from __future__ import annotations

import importlib
import inspect
import sys

from _describe import emit, error, params, version

BINDINGS = ("furiosa_smi", "furiosa_smi_py")


def methods(cls: type) -> dict[str, dict]:
    return {n: params(m) for n, m in vars(cls).items() if not n.startswith("_") and inspect.isroutine(m)}


def call(fn):
    try:
        return {"value": repr(fn())}
    except Exception as exc:
        return {"error": error(exc)}


def describe(name: str) -> dict:
    smi = importlib.import_module(name)
    found = {
        "has_init": hasattr(smi, "init"),
        "list_devices": params(smi.list_devices),
        "Device": methods(smi.Device),
    }
    if hasattr(smi, "DeviceInfo"):
        found["DeviceInfo"] = methods(smi.DeviceInfo)
    found["list_devices_first_call"] = call(smi.list_devices)  # before any init()
    if found["has_init"]:
        found["init"] = call(smi.init)
        found["list_devices_after_init"] = call(smi.list_devices)
    return found


def meter_with(name: str) -> dict:
    from workers.power import FuriosaSmiMeter

    other = next(b for b in BINDINGS if b != name)
    hidden = sys.modules.get(other)
    sys.modules[other] = None  # import of it fails, as where it is not installed
    try:
        return call(FuriosaSmiMeter)
    finally:
        if hidden is None:
            del sys.modules[other]
        else:
            sys.modules[other] = hidden


def main() -> None:
    found = {"versions": {d: version(d) for d in ("furiosa-smi", "furiosa-smi-py")}}
    found["bindings"] = {name: describe(name) for name in BINDINGS}
    found["meter"] = {name: meter_with(name) for name in BINDINGS}
    emit(found)


if __name__ == "__main__":
    main()
