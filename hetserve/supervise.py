"""``hetserve serve`` as two processes, so a SIGTERM to its process group still drains.

A service manager (systemd, a container runtime, a shell's job control)
signals the whole process group. Ray's processes, started by the process
that calls ``ray.init``, live in that group too: a group SIGTERM killed the
raylet and the HTTP proxy before the gateway could drain, so new requests
were refused at the connection instead of getting a 503.

So the command the operator runs is a small supervisor that stays in the
caller's process group and starts the real server (``HETSERVE_SUPERVISED=1``)
in a session of its own; every Ray process, pool replica and engine process
inherits that session. A SIGTERM or SIGINT to the supervisor (alone or with
its group) becomes one SIGTERM to the server, which drains and stops; after
it exits, or when it overruns its bound, whatever is left in its session is
terminated, then killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

import psutil

#: Set in the server's environment: it is the supervised child, not the supervisor.
CHILD_ENV = "HETSERVE_SUPERVISED"
#: Seconds beyond the fleet's drain and shutdown timeouts before the server is killed.
MARGIN_S = 15.0


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def session_processes(sid: int) -> list[psutil.Process]:
    """Processes of session ``sid`` (everything the server started, however deep)."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def end_session(sid: int, grace_s: float = 5.0) -> int:
    """SIGTERM then SIGKILL every process left in session ``sid``; returns how many there were."""
    left = session_processes(sid)
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, still = psutil.wait_procs(left, timeout=grace_s)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(still, timeout=grace_s)
    return len(left)


def run(argv: list[str], stop_bound_s: float) -> int:
    """Run ``hetserve`` ``argv`` as the supervised server; returns its exit status.

    ``stop_bound_s``: how long the server may take from the SIGTERM to its exit
    (the fleet's drain plus shutdown timeouts) before it is killed.
    """
    env = {**os.environ, CHILD_ENV: "1"}
    child = subprocess.Popen([sys.executable, "-m", "hetserve.cli", *argv], env=env, start_new_session=True)
    stopping = threading.Event()

    def on_signal(signum, _frame) -> None:
        if not stopping.is_set():
            stopping.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # Wait in slices: a signal handler runs between them.
    while child.poll() is None and not stopping.is_set():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(0.5)
    code = child.poll()
    if code is None:
        try:
            code = child.wait(stop_bound_s + MARGIN_S)
        except subprocess.TimeoutExpired:
            print("hetserve: the server did not stop in time; killing it", file=sys.stderr, flush=True)
            child.kill()
            code = child.wait()
    left = end_session(child.pid)
    if left:
        print(f"hetserve: ended {left} process(es) the server left behind", file=sys.stderr, flush=True)
    return code if code >= 0 else 128 - code
