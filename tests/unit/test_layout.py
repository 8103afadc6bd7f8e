"""The package layering of docs/architecture.md, checked on every import
statement (function-level ones included), so an arrow back up fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"hetserve", "gateway", "plan", "sim", "calibration", "loadtests", "deploy", "fleet", "workers", "routing"}
#: Which of our packages each package may import (itself always).
ALLOWED = {
    "routing": set(),
    "workers": {"routing"},
    "fleet": {"workers", "routing"},
    "loadtests": {"fleet"},
    "deploy": {"fleet", "workers"},
    "gateway": {"fleet", "workers", "routing", "deploy"},
    "sim": {"fleet", "workers", "routing", "loadtests"},
    "calibration": {"fleet", "workers", "routing", "loadtests"},
    "plan": {"fleet", "workers", "routing", "sim", "loadtests"},
    "hetserve": OURS,
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_lies_below_it(package):
    bad = {
        f"{path.relative_to(ROOT)} imports {other}"
        for path in (ROOT / package).rglob("*.py")
        for other in imports_of(path) - ALLOWED[package] - {package}
    }
    assert not bad, sorted(bad)


def test_routing_imports_no_ray():
    for path in (ROOT / "routing").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n == "ray" or n.startswith("ray.") for n in names), path
