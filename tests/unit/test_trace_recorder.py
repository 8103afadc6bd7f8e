"""Recorded traces stay in arrival order although requests finish out of order."""

from __future__ import annotations

from gateway.trace_recorder import TraceRecorder
from fleet.trace import read_trace


def test_records_wait_for_earlier_arrivals_and_replay_cleanly(tmp_path):
    now = [0.0]
    rec = TraceRecorder(tmp_path / "t.jsonl", clock=lambda: now[0])
    for rid, t in (("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)):
        now[0] = t
        rec.begin(rid)
    now[0] = 5.0
    rec.finish("b", "m", 10, 5, "h100", 0.1, 1.0, 0.5)
    assert rec.flush() == 0  # "a" arrived first and is still running
    rec.drop("a")  # it failed
    rec.finish("d", "m", 12, 6, "rngd", 0.2, 2.0, None)
    assert rec.flush() == 1  # only "b": "c" (earlier than "d") is still running
    rec.finish("c", "m", 11, 7, "atom", 0.3, 3.0, 1.0, slo_ttft_ms=500)
    assert rec.flush() == 2
    records = read_trace(tmp_path / "t.jsonl")
    assert [r.t for r in records] == [2.0, 3.0, 4.0]
    assert [r.served.pool for r in records] == ["h100", "atom", "rngd"]
    assert records[1].slo_ttft_ms == 500 and records[1].output_tokens == 7
