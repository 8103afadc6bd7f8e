"""bench/_servers.py starts a server again on another port when the one it chose was taken before the server
bound it (a port of the ephemeral range: another process's outgoing connection can hold it)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _servers  # noqa: E402


def test_a_taken_port_is_tried_again_and_a_third_taken_one_fails(monkeypatch, tmp_path):
    tries = []

    def start_once(kind, label, log_dir, env, root, cpus, options):
        tries.append(label)
        if len(tries) < 3:
            raise _servers.PortTaken(f"{label}: taken")
        return "server"

    monkeypatch.setattr(_servers, "_start_once", start_once)
    assert _servers.start_server("vllm", log_dir=tmp_path) == "server" and len(tries) == 3
    tries.clear()
    monkeypatch.setattr(_servers, "START_ATTEMPTS", 2)
    with pytest.raises(_servers.PortTaken):
        _servers.start_server("vllm", log_dir=tmp_path)
    assert len(tries) == 2


def test_any_other_failure_to_start_is_not_retried(monkeypatch, tmp_path):
    tries = []

    def start_once(*args):
        tries.append(args)
        raise RuntimeError("exited with 1 before answering")

    monkeypatch.setattr(_servers, "_start_once", start_once)
    with pytest.raises(RuntimeError, match="exited"):
        _servers.start_server("vllm", log_dir=tmp_path)
    assert len(tries) == 1
