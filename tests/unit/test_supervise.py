"""The supervisor's sweep: every process left in the server's session ends (no Ray)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from hetserve.supervise import end_session, session_processes


def test_end_session_ends_a_session_and_its_grandchildren_but_nothing_else():
    # A session leader whose child ignores SIGTERM (as a stuck engine might): both must end.
    code = ("import signal, subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
            "time.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while len(session_processes(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        procs = session_processes(leader.pid)
        assert end_session(leader.pid, grace_s=1) == 2
        leader.wait(5)
        _, alive = psutil.wait_procs(procs, timeout=5)
        assert not alive and session_processes(leader.pid) == []
        assert bystander.poll() is None  # another session is left alone
    finally:
        bystander.kill()
        leader.kill()
