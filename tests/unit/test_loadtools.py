"""bench/loadtools.py gives every load tool the same load, and reads each tool's report the same way."""

from __future__ import annotations

import argparse
import json

import pytest

import loadtools


@pytest.fixture
def load(tmp_path):
    return argparse.Namespace(requests=160, concurrency=8, prompt_tokens=128, output_tokens=64, out=tmp_path)


@pytest.mark.parametrize("tool", ["hetserve", "vllm", "aiperf"])
def test_command_line_tools_get_the_same_load(tool, load, tmp_path):
    cmd = loadtools.command(tool, load, "http://127.0.0.1:9", tmp_path, "/tok", seed=1)
    line = " ".join(cmd)
    for value in ("160", "8", "128", "64", "/tok", "http://127.0.0.1:9"):
        assert f" {value}" in line, (tool, value)
    if tool != "hetserve":  # hetserve loadtest always sends ignore_eos
        assert "ignore" in line.replace("_", "-").lower()  # ignore_eos, however the tool spells it


def test_guidellm_scenario_file_carries_the_same_load(load, tmp_path):
    loadtools.command("guidellm", load, "http://127.0.0.1:9", tmp_path, "/tok", seed=1)
    spec = json.loads((tmp_path / "guidellm.json").read_text())["spec"]
    assert spec["profile"] == {"kind": "concurrent", "streams": 8}
    assert spec["constraints"] == [{"kind": "max_requests", "count": 160}]
    assert spec["data"] == [{"kind": "synthetic_text", "prompt_tokens": 128, "output_tokens": 64}]
    assert spec["backend"]["extras"]["body"] == {"ignore_eos": True}
    assert spec["tokenizer"]["model"] == "/tok"


def test_table_shows_medians_spread_and_ratios():
    runs = [
        {"tool": "hetserve", "round": r, **dict.fromkeys(loadtools.METRICS, v)} for r, v in enumerate((10.0, 12.0, 11.0))
    ] + [
        {"tool": "aiperf", "round": r, **dict.fromkeys(loadtools.METRICS, v)} for r, v in enumerate((11.0, 11.0, 13.2))
    ] + [{"tool": "guidellm", "round": 0, "error": "exit 1: boom"}]
    text = loadtools.table(runs, ["hetserve", "aiperf", "guidellm"])
    assert "| TTFT mean (ms) | 11.00 [10.00–12.00] | 11.00 [11.00–13.20] (1.000) |" in text
    assert "failed: guidellm round 0: exit 1: boom" in text
