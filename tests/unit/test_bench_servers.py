"""bench/_servers.py starts a server again on another port when the one it chose was taken before the server
bound it (a port of the ephemeral range: another process's outgoing connection can hold it)."""

import pytest

import _servers


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


def test_only_a_log_line_naming_the_chosen_port_counts_as_taken(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("[ALERT] Starting frontend http-default: cannot bind socket (Address already in use) "
                   "[127.0.0.1:8123]\n")
    assert _servers._port_taken(log, 8123)
    log.write_text("ERROR: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8123): "
                   "address already in use\n")
    assert _servers._port_taken(log, 8123)
    log.write_text("dashboard: [Errno 98] Address already in use [127.0.0.1:52365]\nstarted on 18123\n")
    assert not _servers._port_taken(log, 8123)  # another port, and the chosen one only inside another number


def test_an_interrupt_while_starting_is_not_a_taken_port(monkeypatch, tmp_path):
    class Proc:
        def poll(self):
            return None

    log_dir = tmp_path / "logs"
    monkeypatch.setattr(_servers.subprocess, "Popen", lambda *a, **k: Proc())
    monkeypatch.setattr(_servers, "free_port", lambda: 8123)
    monkeypatch.setattr(_servers.Server, "stop", lambda self: None)

    def interrupted(server, t0):
        server.log_path.write_text("cannot bind socket (Address already in use) [127.0.0.1:8123]\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(_servers, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _servers.start_server("vllm", log_dir=log_dir)
