"""Power meters against fake vendor modules and recorded tool output."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from workers.errors import EngineStartError
from workers.power import (
    FuriosaSmiMeter,
    ModelledMeter,
    NvmlMeter,
    RaplMeter,
    RblnSmiMeter,
    TrapezoidIntegrator,
    make_power_meter,
)
from workers.power.rbln import parse_power


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- factory -----------------------------------------------------------------


def test_factory_names_bad_source_and_lists_valid_ones():
    with pytest.raises(EngineStartError) as err:
        make_power_meter("nvml-smi")
    message = str(err.value)
    assert "'nvml-smi'" in message
    for source in ("nvml", "furiosa-smi", "rbln-smi", "rapl", "modelled"):
        assert source in message


def test_factory_rejects_unknown_option_before_touching_hardware():
    with pytest.raises(EngineStartError, match="devcies"):
        make_power_meter("rapl", devcies=[0])


def test_factory_builds_configured_meter():
    meter = make_power_meter("modelled", idle_watts=10, peak_watts=10, utilisation=lambda: 0.0)
    assert isinstance(meter, ModelledMeter)
    assert meter.watts() == 10


# --- trapezoid rule ----------------------------------------------------------


def test_trapezoid_integrates_linear_ramp_exactly():
    clock = FakeClock(0.0)
    integrator = TrapezoidIntegrator(clock)
    assert integrator.add(0.0) == 0.0
    clock.t = 10.0
    assert integrator.add(100.0) == pytest.approx(500.0)  # mean 50 W over 10 s
    clock.t = 12.0
    assert integrator.add(100.0) == pytest.approx(700.0)


# --- NVML --------------------------------------------------------------------


def fake_pynvml(energy_mj, power_mw, energy_supported=True):
    """pynvml's documented surface: handles by index/UUID, mJ counter, mW power."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nvml.NVMLError = NVMLError
    nvml.calls = []
    nvml.nvmlInit = lambda: nvml.calls.append("init")
    nvml.nvmlShutdown = lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetCount = lambda: len(power_mw)

    def by_index(i):
        if not 0 <= i < len(power_mw):
            raise NVMLError("Invalid Argument")
        return i

    def by_uuid(uuid):
        return int(uuid.removeprefix("GPU-"))

    def energy(handle):
        if not energy_supported:
            raise NVMLError("Not Supported")
        return energy_mj[handle]

    nvml.nvmlDeviceGetHandleByIndex = by_index
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    nvml.nvmlDeviceGetTotalEnergyConsumption = energy
    nvml.nvmlDeviceGetPowerUsage = lambda handle: power_mw[handle]
    return nvml


def test_nvml_counter_converts_millijoules_and_sums_devices(monkeypatch):
    energy = [5_000_000, 7_000_000]
    nvml = fake_pynvml(energy, [250_000, 125_500])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    meter = NvmlMeter(devices=[0, 1])
    assert meter.energy_joules() == 0.0
    energy[0] += 1_500  # 1.5 J
    energy[1] += 2_500  # 2.5 J
    assert meter.energy_joules() == pytest.approx(4.0)
    assert meter.watts() == pytest.approx(375.5)
    assert meter.describe() == {
        "source": "nvml",
        "devices": [0, 1],
        "provenance": "measured",
        "method": "energy counter",
    }
    meter.close()
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_integrates_power_when_counter_unsupported(monkeypatch):
    power = [200_000]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0], power, energy_supported=False))
    clock = FakeClock()
    meter = NvmlMeter(devices=[0], clock=clock)
    clock.t += 2.0
    power[0] = 300_000
    assert meter.energy_joules() == pytest.approx(500.0)  # (200 + 300) / 2 W * 2 s
    assert meter.describe()["method"] == "power samples, trapezoid rule"


def test_nvml_takes_devices_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0, 0, 0], [1000, 2000, 4000]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-1")
    meter = NvmlMeter()
    assert meter.describe()["devices"] == [2, "GPU-1"]
    assert meter.watts() == pytest.approx(6.0)


def test_nvml_missing_library_is_a_start_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(EngineStartError, match="nvidia-ml-py"):
        make_power_meter("nvml", devices=[0])


def test_nvml_missing_device_is_a_start_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0], [1000]))
    with pytest.raises(EngineStartError, match="no GPU 3"):
        NvmlMeter(devices=[3])


def test_nvml_empty_visible_devices_is_a_start_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0], [1000]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(EngineStartError, match="no GPU is visible"):
        NvmlMeter()


# --- furiosa-smi ---------------------------------------------------------------


def fake_furiosa_smi(watts_by_index):
    """furiosa_smi (2026.4+): list_devices() with no init, device_name() "npuN", power_consumption() in W."""
    smi = types.ModuleType("furiosa_smi")

    class Device:
        def __init__(self, index):
            self._index = index

        def device_name(self):
            return f"npu{self._index}"

        def power_consumption(self):
            return watts_by_index[self._index]

    smi.list_devices = lambda: [Device(i) for i in sorted(watts_by_index)]
    return smi


def fake_furiosa_smi_py(watts_by_index):
    """furiosa_smi_py (to 2026.1): init(), list_devices(), device_info().index(), power_consumption() in W."""
    smi = types.ModuleType("furiosa_smi_py")
    smi.initialised = False

    class Device:
        def __init__(self, index):
            self._index = index

        def device_info(self):
            return types.SimpleNamespace(index=lambda: self._index, name=lambda: f"npu{self._index}")

        def power_consumption(self):
            return watts_by_index[self._index]

    def init():
        smi.initialised = True

    def list_devices():
        if not smi.initialised:
            raise RuntimeError("Context error")  # what the real binding raises before init()
        return [Device(i) for i in sorted(watts_by_index)]

    smi.init = init
    smi.list_devices = list_devices
    return smi


@pytest.fixture(params=["furiosa_smi", "furiosa_smi_py"])
def install_furiosa_smi(request, monkeypatch):
    """Installs a fake of one binding, the other absent; returns a function of the power table."""

    def install(watts_by_index):
        other = "furiosa_smi_py" if request.param == "furiosa_smi" else "furiosa_smi"
        fake = fake_furiosa_smi if request.param == "furiosa_smi" else fake_furiosa_smi_py
        monkeypatch.setitem(sys.modules, other, None)
        monkeypatch.setitem(sys.modules, request.param, fake(watts_by_index))

    return install


def test_furiosa_integrates_selected_devices(install_furiosa_smi):
    watts = {0: 40.0, 1: 55.0, 2: 180.0}
    install_furiosa_smi(watts)
    clock = FakeClock()
    meter = FuriosaSmiMeter(devices=[0, 1], clock=clock)
    assert meter.watts() == pytest.approx(95.0)
    clock.t += 4.0
    watts[0] = 60.0  # 95 W -> 115 W over 4 s
    assert meter.energy_joules() == pytest.approx(420.0)
    assert meter.describe()["devices"] == [0, 1]


def test_furiosa_missing_device_is_a_start_error(install_furiosa_smi):
    install_furiosa_smi({0: 40.0})
    with pytest.raises(EngineStartError, match=r"\[5\] not found; present: \[0\]"):
        FuriosaSmiMeter(devices=[5])


def test_furiosa_prefers_the_newer_binding(monkeypatch):
    monkeypatch.setitem(sys.modules, "furiosa_smi", fake_furiosa_smi({0: 40.0}))
    monkeypatch.setitem(sys.modules, "furiosa_smi_py", fake_furiosa_smi_py({0: 99.0}))
    assert FuriosaSmiMeter().watts() == 40.0


def test_furiosa_missing_package_is_a_start_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "furiosa_smi", None)
    monkeypatch.setitem(sys.modules, "furiosa_smi_py", None)
    with pytest.raises(EngineStartError, match="furiosa-smi package"):
        FuriosaSmiMeter()


# --- rbln-smi ----------------------------------------------------------------

# `rbln-smi -j` on an ATOM Plus node (KMD 3.0.0), trimmed: key names, value
# spellings and JSON types as the tool emits them.
ATOM_PLUS = {
    "KMD_version": "3.0.0",
    "devices": [
        {
            "npu": 0, "name": "RBLN-CA22", "sid": "0000000022513338",
            "uuid": "4126c167-c7a6-4d0a-80dd-ffbf3641d1b0", "device": "rbln0",
            "status": "normal", "fw_ver": "3.0.0",
            "pci": {"dev": "0x1220", "bus_id": "0000:03:00.0", "numa_node": "0",
                    "link_speed": "32.0GT/s", "link_width": "16"},
            "temperature": "31C", "card_power": "17521800uW", "pstate": "P14",
            "memory": {"used": "0", "total": "16877879296"}, "util": "0.0",
            "board_info": "0005000c", "location": 5,
        },
        {
            "npu": 1, "name": "RBLN-CA22", "sid": "0000000022513339",
            "uuid": "a58a772b-1a27-4df3-823d-bd1d26627f74", "device": "rbln1",
            "status": "normal", "fw_ver": "3.0.0",
            "pci": {"dev": "0x1220", "bus_id": "0000:04:00.0", "numa_node": "0",
                    "link_speed": "32.0GT/s", "link_width": "16"},
            "temperature": "33C", "card_power": "18307255uW", "pstate": "P14",
            "memory": {"used": "0", "total": "16877879296"}, "util": "0.0",
            "board_info": "0005000c", "location": 5,
        },
    ],
    "contexts": [],
}


class RecordedRunner:
    def __init__(self, payload):
        self.payload = payload
        self.argv = []

    def __call__(self, argv):
        self.argv.append(list(argv))
        return json.dumps(self.payload)


def test_parse_power_units():
    assert parse_power("17521800uW") == pytest.approx(17.5218)
    assert parse_power("43.9W") == pytest.approx(43.9)
    assert parse_power("500mW") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        parse_power("N/A")


def test_rbln_sums_cards_in_watts_and_runs_json_flag():
    runner = RecordedRunner(ATOM_PLUS)
    meter = RblnSmiMeter(runner=runner)
    assert meter.watts() == pytest.approx(17.5218 + 18.307255)
    assert runner.argv[0] == ["rbln-smi", "-j"]
    assert meter.describe()["devices"] == ["rbln0", "rbln1"]


def test_rbln_counts_a_multi_die_card_once():
    payload = json.loads(json.dumps(ATOM_PLUS))
    for die in payload["devices"]:  # two dies of one ATOM Max board
        die["sid"] = "0000000099999999"
        die["card_power"] = "60000000uW"
    meter = RblnSmiMeter(runner=RecordedRunner(payload))
    assert meter.watts() == pytest.approx(60.0)


def test_rbln_integrates_selected_device():
    payload = json.loads(json.dumps(ATOM_PLUS))
    clock = FakeClock()
    meter = RblnSmiMeter(devices=[1], runner=RecordedRunner(payload), clock=clock)
    clock.t += 10.0
    payload["devices"][1]["card_power"] = "28307255uW"  # +10 W over 10 s
    assert meter.energy_joules() == pytest.approx((18.307255 + 28.307255) / 2 * 10)


def test_rbln_missing_tool_or_device_is_a_start_error():
    def not_installed(argv):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    with pytest.raises(EngineStartError, match="ships with the RBLN driver"):
        RblnSmiMeter(runner=not_installed)

    def failing(argv):
        raise subprocess.CalledProcessError(1, argv, "driver not loaded")

    with pytest.raises(EngineStartError, match="rbln-smi -j failed"):
        RblnSmiMeter(runner=failing)
    with pytest.raises(EngineStartError, match=r"\['rbln7'\] not found"):
        RblnSmiMeter(devices=[7], runner=RecordedRunner(ATOM_PLUS))


# --- RAPL --------------------------------------------------------------------


def make_zone(root, name, label, energy_uj, range_uj=262_143_328_850):
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return zone


def test_rapl_sums_packages_and_skips_subzones_and_psys(tmp_path):
    p0 = make_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    p1 = make_zone(tmp_path, "intel-rapl:1", "package-1", 2_000_000)
    sub = make_zone(tmp_path, "intel-rapl:0:0", "core", 5)
    psys = make_zone(tmp_path, "intel-rapl:2", "psys", 9)
    meter = RaplMeter(root=tmp_path)
    assert meter.describe()["devices"] == ["intel-rapl:0", "intel-rapl:1"]
    (p0 / "energy_uj").write_text("3000000\n")
    (p1 / "energy_uj").write_text("2500000\n")
    (sub / "energy_uj").write_text("999999999\n")
    (psys / "energy_uj").write_text("999999999\n")
    assert meter.energy_joules() == pytest.approx(2.5)


def test_rapl_counter_wraparound(tmp_path):
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 999_000, range_uj=1_000_000)
    meter = RaplMeter(devices=[0], root=tmp_path)
    (zone / "energy_uj").write_text("500\n")  # wrapped: 1000 uJ to the top, then 500
    assert meter.energy_joules() == pytest.approx(0.0015)
    (zone / "energy_uj").write_text("2500\n")
    assert meter.energy_joules() == pytest.approx(0.0035)


def test_rapl_watts_is_mean_power_since_previous_read(tmp_path):
    zone = make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    clock = FakeClock()
    meter = RaplMeter(root=tmp_path, clock=clock)
    clock.t += 2.0
    (zone / "energy_uj").write_text("130000000\n")  # 130 J in 2 s
    assert meter.watts() == pytest.approx(65.0)
    clock.t += 1.0
    (zone / "energy_uj").write_text("170000000\n")
    assert meter.watts() == pytest.approx(40.0)


def test_rapl_missing_or_unreadable_is_a_start_error(tmp_path):
    with pytest.raises(EngineStartError, match="no RAPL package zone"):
        RaplMeter(root=tmp_path)
    with pytest.raises(EngineStartError, match="unreadable"):
        RaplMeter(root=tmp_path / "absent")


# --- modelled ----------------------------------------------------------------


def test_modelled_from_engine_counts_from_meter_start():
    state = {"joules": 1234.0, "watts": 88.0}
    meter = ModelledMeter(energy=lambda: state["joules"], power=lambda: state["watts"])
    state["joules"] += 50.0
    assert meter.energy_joules() == pytest.approx(50.0)
    assert meter.watts() == 88.0
    assert meter.describe()["provenance"] == "modelled"


def test_modelled_from_utilisation_interpolates_and_integrates():
    load = {"u": 0.0}
    clock = FakeClock()
    meter = ModelledMeter(idle_watts=37, peak_watts=180, utilisation=lambda: load["u"], clock=clock)
    load["u"] = 1.5  # clamped to 1
    assert meter.watts() == 180.0
    clock.t += 2.0
    load["u"] = 0.5
    assert meter.energy_joules() == pytest.approx((180 + 108.5) / 2 * 2)
    assert meter.describe() == {
        "source": "modelled",
        "devices": [],
        "provenance": "modelled",
        "method": "idle/peak by utilisation, trapezoid rule",
    }


def test_modelled_needs_exactly_one_form():
    with pytest.raises(EngineStartError, match="either"):
        ModelledMeter(energy=lambda: 0.0)
    with pytest.raises(EngineStartError, match="idle_watts <= peak_watts"):
        ModelledMeter(idle_watts=50, peak_watts=10, utilisation=lambda: 0.0)
