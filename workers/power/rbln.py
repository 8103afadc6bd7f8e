"""Rebellions ATOM NPUs through ``rbln-smi -j`` (JSON output).

Layout (``rbln-smi -j``, same as ``rbln-stat --json``)::

    {"KMD_version": "3.0.0",
     "devices": [{"npu": 0, "sid": "0000000022513338", "device": "rbln0",
                  "card_power": "17521800uW", ...}, ...],
     "contexts": [...]}

``card_power`` is a string in microwatts; ``W`` and ``mW`` suffixes are read
too. It is per card: on multi-die cards (ATOM Max) every die repeats its
card's value, so dies are grouped by board serial ``sid`` and each card counts
once. Devices are chosen by kernel index (``0`` means ``rbln0``). The command
runs on every read (tens of ms); energy is integrated from those samples.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence

from workers.errors import EngineStartError
from workers.power.base import Clock, SampledPowerMeter

Runner = Callable[[Sequence[str]], str]

_POWER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(uW|mW|W)\s*$")
_SCALE = {"uW": 1e-6, "mW": 1e-3, "W": 1.0}


def run_command(argv: Sequence[str]) -> str:
    """Run ``argv`` and return its stdout; raises on a non-zero exit."""
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout


def parse_power(text: str) -> float:
    """``"17521800uW"`` -> 17.5218 (watts)."""
    match = _POWER.match(text)
    if match is None:
        raise ValueError(f"unrecognised rbln-smi power value {text!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


class RblnSmiMeter(SampledPowerMeter):
    source = "rbln-smi"

    def __init__(
        self,
        devices: Sequence[int] | None = None,
        *,
        command: str = "rbln-smi",
        runner: Runner = run_command,
        clock: Clock = time.monotonic,
    ):
        super().__init__(clock)
        self._argv = [command, "-j"]
        self._runner = runner
        try:
            present = [d["device"] for d in self._query()]
        except FileNotFoundError as exc:
            raise EngineStartError(
                f"power source 'rbln-smi': {command!r} not found (it ships with the RBLN driver)"
            ) from exc
        except (subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            raise EngineStartError(f"power source 'rbln-smi': {' '.join(self._argv)} failed: {exc}") from exc
        self._names = [f"rbln{d}" for d in devices] if devices is not None else present
        missing = [n for n in self._names if n not in present]
        if missing or not self._names:
            raise EngineStartError(
                f"power source 'rbln-smi': {missing or 'no NPU'} not found; present: {present}"
            )
        self.watts()

    def _query(self) -> list[dict]:
        return json.loads(self._runner(self._argv))["devices"]

    def _read_watts(self) -> float:
        cards: dict[str, float] = {}
        for device in self._query():
            if device["device"] in self._names:
                card = device.get("sid") or device["device"]
                cards[card] = parse_power(device["card_power"])
        return sum(cards.values())

    def describe(self) -> dict:
        return {
            "source": self.source,
            "devices": self._names,
            "provenance": "measured",
            "method": "power samples, trapezoid rule",
        }
