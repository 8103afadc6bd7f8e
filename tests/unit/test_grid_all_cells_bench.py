"""The whole-grid benchmark over every evaluation cell (bench/grid_all_cells.py): verdicts, ranking, a smoke run."""

from energy_frontier import SettingRun
from grid_all_cells import rank, verdicts
from policy_eval import Verdict


def test_a_setting_meets_a_cell_only_with_both_targets():
    # The baselines run beside the settings: floor 0.97 - 0.01; energy at most 0.75 × 0.4 J/token.
    runs = [SettingRun("least-load", 0.4, 0.95, {}), SettingRun("latency", 0.3, 0.97, {}),
            SettingRun("a", 0.28, 0.965, {}), SettingRun("b", 0.28, 0.955, {}), SettingRun("c", 0.32, 0.99, {}),
            SettingRun("d", None, 0.99, {}), SettingRun("e", 0.30002, 0.99, {})]
    got = verdicts(runs)[2:]
    assert [v.met for v in got] == [True, False, False, False, False]  # e: just over 0.75 ×, not rounded in
    assert [v.attainment_ok for v in got] == [True, False, True, True, True]
    assert abs(got[0].x_least_load - 0.7) < 1e-12 and got[3].x_least_load is None


def test_settings_rank_by_cells_met_then_attainment_then_energy():
    per_cell = [
        [Verdict(0.7, True), Verdict(0.6, True), Verdict(0.8, True), Verdict(0.5, False)],
        [Verdict(0.7, True), Verdict(0.9, True), Verdict(0.7, True), Verdict(0.5, False)],
    ]
    ranked = rank(["a", "b", "c", "d"], per_cell)
    # a meets both cells; b and c one each with both attainment cells, b spending less on average; d none
    assert [r["setting"] for r in ranked] == ["a", "b", "c", "d"]
    assert [r["met"] for r in ranked] == [2, 1, 1, 0]
    assert ranked[3]["attainment_ok"] == 0 and ranked[1]["mean_x_least_load"] == 0.75


def test_quick_run_counts_cells_per_setting(quick_bench):
    doc, stdout = quick_bench("grid_all_cells.py")
    assert doc["benchmark"] == "grid_all_cells" and sum(doc["histogram"].values()) == 12
    assert len(doc["labels"]) == 2 and all(len(r["cells"]) == 2 for r in doc["top"])
    # least-load is its own energy baseline: 1.0 × in every cell, so it meets none
    least_load = next(r for r in doc["top"] if r["setting"] == "least-load")
    assert least_load["met"] == 0 and all(x == 1.0 for x, _ in least_load["cells"])
    assert doc["default"]["setting"] == "slo-energy" and "(default)" in stdout
