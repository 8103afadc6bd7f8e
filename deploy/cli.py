"""``hetserve config``: write a Serve config YAML (``serve deploy``) or a KubeRay RayService for a fleet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from deploy import kuberay
from deploy.serve_config import serve_config
from fleet.config import FleetConfigError, load_fleet


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a RayService's ``serveConfigV2``) as literal blocks, the way KubeRay's examples write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hetserve config", description=__doc__)
    p.add_argument("--fleet", help="fleet YAML (default: the embedded default fleet)")
    p.add_argument("--out", help="write here (default: standard output)")
    p.add_argument("--kuberay", action="store_true", help="a KubeRay RayService manifest instead of a Serve config")
    p.add_argument("--fleet-path", help="Serve config only: refer to the fleet by this path on the cluster instead of inline")
    p.add_argument("--host", default="0.0.0.0", help="Serve config only: HTTP proxy bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="Serve config only: HTTP port (default: the fleet's)")
    p.add_argument("--image", default=kuberay.DEFAULT_IMAGE, help="KubeRay only: container image with hetserve installed")
    p.add_argument("--name", default="hetserve", help="KubeRay only: the RayService's name")
    return p


def config_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        fleet, base_dir = load_fleet(args.fleet)
    except FleetConfigError as exc:
        print(f"hetserve config: invalid fleet: {exc}", file=sys.stderr)
        return 2
    if args.kuberay:
        doc = kuberay.rayservice(fleet, name=args.name, image=args.image)
    else:
        doc = serve_config(fleet, fleet_path=args.fleet_path, host=args.host, port=args.port, base_dir=base_dir)
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
