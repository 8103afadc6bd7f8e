"""The modelled CPU meter turns measured CPU time into joules."""

from __future__ import annotations

import time

from workers.meters import CpuTimeEnergy


def test_cpu_time_energy_rises_with_work_above_idle():
    clock = [0.0]
    meter = CpuTimeEnergy(idle_watts=10.0, peak_watts=110.0, clock=lambda: clock[0])
    clock[0] = 2.0
    idle_only = meter.energy_joules()
    assert 20.0 <= idle_only < 20.0 + 100.0 * 0.05  # two seconds of idle draw, next to no CPU used
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU
        pass
    assert meter.energy_joules() == idle_only  # readings are held for HOLD_S
    clock[0] = 2.5
    busy = meter.energy_joules() - idle_only - 10.0 * 0.5
    assert busy >= 100.0 * 0.25 / meter._cores
    assert busy <= 100.0 * 0.6 / meter._cores + 1
