"""Smoke run of the evaluation benchmark (bench/policy_eval.py --quick): a few requests."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_every_policy_with_the_checks(tmp_path):
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "policy_eval.py"), "--quick", "--out", str(out),
         "--policy", "least-load", "latency", "efficiency"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert [c["load"] for c in doc["cells"]] == ["1/4", "1/2", "full"]
    for cell in doc["cells"]:
        assert {r["policy"] for r in cell["runs"]} >= {"least-load", "latency", "efficiency"}
        for r in cell["runs"]:
            assert r["completed"] + sum(r["rejected"].values()) == cell["requests"]
            assert set(r["slo_attainment_by_class"]) == {"500/40", "10000/150"}  # the bursty trace's classes
            assert r["oracle_ratio"] >= 1.0  # the bound is below every run
        assert cell["check"]["policy"] == doc["candidate"]
    assert "cells meet both targets" in proc.stdout and ("met" in proc.stdout or "MISSED" in proc.stdout)
    # the per-policy count of cells meeting each target, one row per policy run, counts out of the 3 cells
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line.count("/3 |") == 4]
    assert {row.split(" | ")[0].removeprefix("| ") for row in rows} == {"least-load", "latency", "efficiency",
                                                                       doc["candidate"]}
    least = next(row for row in rows if row.startswith("| least-load |")).strip("| ").split(" | ")
    assert least[2] == "0/3" and least[3] == "0/3"  # never at 0.75 × its own joules, so never both


def test_a_routing_file_runs_under_its_name_and_can_be_the_candidate(tmp_path):
    routing = tmp_path / "packed-first.yaml"
    routing.write_text("policy: slo-energy\nslo: {ttft_ms: 400, tpot_ms: 30}\n")
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "policy_eval.py"), "--quick", "--out", str(out),
         "--policy", "least-load", "latency", str(routing), "--candidate", str(routing)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["candidate"] == "packed-first"
    for cell in doc["cells"]:
        assert [r["policy"] for r in cell["runs"]] == ["least-load", "latency", "packed-first"]
        assert cell["check"]["policy"] == "packed-first"
