"""Smoke run of the pool-hop client benchmark (bench/relay_client.py): every client relays every line."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_client_relays_every_line_of_every_stream(tmp_path):
    out = tmp_path / "relay_client.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay_client.py"), "--rounds", "1", "--streams", "3", "--lines", "40",
         "--opens", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [c["client"] for c in doc["clients"]] == ["httpx", "aiohttp", "hetserve"]
    for client in doc["clients"]:
        assert [r["lines"] for r in client["per_round"]] == [3 * 40]
        assert client["cpu_us_per_line"] > 0 and client["cpu_us_per_request"] > 0
    assert "| hetserve |" in proc.stdout
