"""Smoke run of the pool-hop transport benchmark (bench/pool_hop_transport.py): each transport relays whole streams.

It starts its own local Ray cluster in a subprocess (about 20 s here), as the peer harness does.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINES = 8


def test_every_transport_relays_whole_streams_and_answers_whole_requests(tmp_path):
    out = tmp_path / "pool_hop_transport.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pool_hop_transport.py"), "--rounds", "1", "--duration", "0.3",
         "--streams", "1,3", "--lines", str(LINES), "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [t["transport"] for t in doc["transports"]] == ["handle", "handle-grpc", "http"]
    for transport in doc["transports"]:
        (row,) = transport["per_round"]
        for streams in (1, 3):
            # closed-loop clients stop between streams, never inside one: every stream relayed all its items
            assert row[f"items_{streams}"] > 0 and row[f"items_{streams}"] % LINES == 0, row
            assert row[f"cpu_us_per_item_{streams}"] > 0
        assert row["wholes"] > 0 and row["whole_latency_ms_p50"] > 0
        assert transport["cpu_us_per_item_by_role_1"].keys() == row["cpu_by_role_1"].keys()
    assert "| http |" in proc.stdout
