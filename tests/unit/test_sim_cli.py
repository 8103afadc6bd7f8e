"""``hetserve simulate`` and ``hetserve tune`` write their files."""

from __future__ import annotations

import json

from fleet.trace import write_trace
from loadtests.workloads import generate_trace
from routing import load_routing_config
from sim.cli import simulate_main, tune_main


def _trace(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(path, generate_trace(model="meta-llama/Llama-3.1-8B-Instruct", rate=8, n=200, seed=1))
    return str(path)


def test_simulate_writes_json_and_html(tmp_path, capsys):
    out = tmp_path / "out"
    rc = simulate_main(["--trace", _trace(tmp_path), "--policy", "efficiency", "--policy", "least-load",
                        "--slo-ttft-ms", "2000", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["efficiency", "least-load"]
    assert doc["oracle"]["j_per_token_attributed"] > 0
    assert all(r["oracle_ratio"] >= 1 for r in doc["runs"])
    # The capped estimate sits at or above the bound, so every run is nearer it.
    assert doc["oracle_capped"]["j_per_token_attributed"] >= doc["oracle"]["j_per_token_attributed"]
    assert all(0 < r["oracle_ratio_capped"] <= r["oracle_ratio"] for r in doc["runs"])
    assert {p["name"] for p in doc["runs"][0]["pools"]} == {"h100", "rngd", "atom"}  # cpu-vllm ignored
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "capped oracle" in page
    printed = capsys.readouterr().out
    assert "efficiency" in printed and "× capped" in printed and "capped oracle" in printed


def test_tune_writes_a_yaml_load_routing_config_accepts(tmp_path):
    out = tmp_path / "routing.yaml"
    rc = tune_main(["--trace", _trace(tmp_path), "--objective", "cost", "--slo-ttft-ms", "2000",
                    "--slo-tpot-ms", "100", "--trials", "4", "--out", str(out)])
    assert rc == 0
    config = load_routing_config(out)
    assert config.slo.ttft_ms is not None


def test_the_simulated_routing_file_can_be_fed_back(tmp_path):
    routing = tmp_path / "tuned.yaml"
    routing.write_text("policy: slo-efficiency\nslo: {tpot_ms: 80}\n")
    assert simulate_main(["--trace", _trace(tmp_path), "--routing", str(routing), "--no-oracle"]) == 0


def test_bad_usage_and_missing_files(tmp_path, capsys):
    assert simulate_main(["--policy", "efficiency"]) == 2  # no --trace
    assert simulate_main(["--trace", str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_tune_with_learning_simulates_each_candidate_as_the_gateway_runs_it():
    from fleet.config import load_fleet
    from sim.run import simulate
    from sim.tune import tune
    from sim.workload import Workload

    specs = load_fleet(None)[0].pools
    workload = Workload.from_records(generate_trace(model="meta-llama/Llama-3.1-8B-Instruct", rate=8, n=200, seed=1))
    _, trials = tune(specs, workload, "energy", slo_ttft_ms=2000, slo_tpot_ms=100, trials=1, learn=True)
    (trial,) = trials
    assert trial.routing["policy"] == "efficiency"  # the first preset: one whose choices read the learned profiles
    targeted = workload.with_default_slo(2000, 100)
    learned = simulate(specs, targeted, load_routing_config(trial.routing), learn=True)
    fixed = simulate(specs, targeted, load_routing_config(trial.routing), learn=False)
    assert learned.j_per_token_attributed != fixed.j_per_token_attributed  # learning changes this run
    assert trial.result.j_per_token_attributed == learned.j_per_token_attributed


def test_tune_says_in_the_file_that_profiles_were_learned(tmp_path):
    out = tmp_path / "routing.yaml"
    assert tune_main(["--trace", _trace(tmp_path), "--trials", "2", "--learn", "--out", str(out)]) == 0
    assert "profiles learned online" in out.read_text().splitlines()[1]
    load_routing_config(out)
