"""The tuning-grid benchmark (bench/energy_frontier.py): its frontier, its labels, a smoke run."""

from energy_frontier import frontier


def _t(attainment: float, j: float) -> dict:
    return {"slo_attainment": attainment, "j_per_token_attributed": j}


def test_the_frontier_keeps_only_settings_no_other_beats_on_both():
    trials = [_t(0.9, 0.5), _t(0.95, 0.6), _t(0.95, 0.55), _t(0.8, 0.52), _t(0.7, 0.3), _t(0.99, 0.9)]
    got = [(t["slo_attainment"], t["j_per_token_attributed"]) for t in frontier(trials)]
    # (0.95, 0.6) loses to (0.95, 0.55); (0.8, 0.52) to (0.9, 0.5)
    assert got == [(0.99, 0.9), (0.95, 0.55), (0.9, 0.5), (0.7, 0.3)]


def test_quick_run_reports_the_least_energy_meeting_the_floor(quick_bench):
    doc, stdout = quick_bench("energy_frontier.py")
    assert doc["benchmark"] == "energy_frontier" and doc["command"].startswith("bench/energy_frontier.py --quick")
    (cell,) = doc["cells"]
    assert cell["settings"] == 40 and 0 < cell["meeting_floor"] <= 40  # the better baseline meets it
    shown = [*cell["frontier"], cell["least_energy"], cell["default"], *cell["baselines"].values()]
    best = cell["best_meeting_floor"]
    assert best["meets_floor"] and best["slo_attainment"] >= cell["floor"]
    assert best["x_least_load"] == min(t["x_least_load"] for t in shown if t["meets_floor"])
    assert cell["least_energy"]["x_least_load"] == min(t["x_least_load"] for t in shown)
    assert cell["baselines"]["least-load"]["x_least_load"] == 1.0
    assert set(best["pools"]) <= {"h100", "rngd", "atom"}
    assert "| default bursty full |" in stdout


def test_a_setting_that_made_no_token_is_left_out_of_the_energy_figures():
    from energy_frontier import PoolFigures, SettingRun, summarise

    pools = {"h100": PoolFigures(1.0, 0.5, 0.2)}
    runs = [SettingRun("least-load", 0.4, 0.95, pools), SettingRun("latency", 0.3, 0.97, pools),
            SettingRun("slo-energy", 0.25, 0.965, pools), SettingRun("efficiency", None, 0.99, {})]
    cell = summarise(runs)
    assert cell["floor"] == 0.97 - 0.01
    assert cell["meeting_floor"] == 3  # the tokenless one reached the floor too
    assert cell["best_meeting_floor"]["setting"] == "slo-energy"
    assert [t["setting"] for t in cell["frontier"]] == ["latency", "slo-energy"]
