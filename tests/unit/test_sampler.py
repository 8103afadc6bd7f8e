"""The background sampler: reads return the cached sample, extrapolated, with no meter I/O."""

from __future__ import annotations

import pytest

from workers.power.base import PowerMeter
from workers.sampler import BackgroundSampledMeter


class CountingMeter(PowerMeter):
    source = "fake"

    def __init__(self):
        self.energy, self.power, self.reads, self.fail = 0.0, 100.0, 0, False

    def watts(self):
        self.reads += 1
        return self.power

    def energy_joules(self):
        self.reads += 1
        if self.fail:
            raise OSError("device busy")
        return self.energy

    def describe(self):
        return {"source": "fake", "provenance": "measured"}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_reads_between_samples_touch_no_meter_and_extrapolate_by_the_last_power():
    inner, clock = CountingMeter(), Clock()
    meter = BackgroundSampledMeter(inner, clock=clock)
    reads = inner.reads
    clock.t = 0.5
    assert meter.energy_joules() == pytest.approx(50.0)  # 0 J sampled + 100 W x 0.5 s
    assert meter.watts() == 100.0
    assert inner.reads == reads


def test_a_sample_below_the_extrapolation_never_makes_energy_go_back():
    inner, clock = CountingMeter(), Clock()
    meter = BackgroundSampledMeter(inner, clock=clock)
    clock.t = 1.0
    before = meter.energy_joules()  # 100 J extrapolated
    inner.energy, inner.power = 80.0, 10.0  # the device measured less
    meter.sample()
    assert meter.energy_joules() == before
    clock.t = 3.0
    assert meter.energy_joules() == pytest.approx(100.0)  # 80 J + 10 W x 2 s


def test_a_failed_read_keeps_the_last_sample_and_is_counted():
    inner, clock = CountingMeter(), Clock()
    meter = BackgroundSampledMeter(inner, clock=clock)
    inner.fail = True
    meter.sample()
    assert meter.errors == 1 and meter.watts() == 100.0


def test_the_thread_stops_on_close():
    inner = CountingMeter()
    meter = BackgroundSampledMeter(inner, rate_hz=1000.0).start()
    meter.close()
    assert not meter._thread.is_alive()
    assert meter.describe()["sampled_hz"] == 1000.0
