"""Smoke run of bench/asgi_layers.py: both paths answer every request and every variant is timed.

That the fast path skips FastAPI's router is tested in test_completions_fast_path.py, not by timing here."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_both_paths_answer_every_request_and_each_variant_is_timed(tmp_path):
    out = tmp_path / "asgi_layers.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "asgi_layers.py"), "--rounds", "1", "--requests", "300",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    cpu = {c["variant"]: c["cpu_us_per_request"] for c in doc["cells"]}
    assert set(cpu) == {"routed", "fast path", "access log INFO", "access log WARNING"}
    assert all(v > 0 for v in cpu.values())
    assert all(len(c["per_round"]) == 1 for c in doc["cells"])
    assert doc["command"].startswith("bench/asgi_layers.py")
