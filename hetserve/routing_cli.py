"""``hetserve routing``: validate a routing file, apply it to a running gateway, show the live one.

Exit codes: 0 done, 1 the gateway refused or could not be reached, 2 bad
usage or an invalid routing file (checked here before anything is sent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx
import yaml

from routing.config import load_routing_config
from routing.errors import RoutingConfigError


def _read(path: str) -> dict:
    """The routing section of ``path``: a routing YAML, or a fleet file's ``routing:``."""
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RoutingConfigError(f"{path}: {exc}") from None
    where = path
    if isinstance(doc, dict) and isinstance(doc.get("routing"), dict) and "pools" in doc:
        doc, where = doc["routing"], f"{path}: routing"
    try:
        config = load_routing_config(doc if isinstance(doc, dict) else [])
    except RoutingConfigError as exc:
        raise RoutingConfigError(str(exc).replace("routing config", where, 1)) from None
    return config.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"policy": config.policy}


def _client(args) -> httpx.Client:
    key = args.admin_key or os.environ.get("HETSERVE_ADMIN_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=args.timeout)


def _answer(resp: httpx.Response) -> int:
    if resp.status_code != 200:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text
        print(f"hetserve routing: the gateway answered {resp.status_code}: {message}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(resp.json(), sort_keys=False), end="")
    return 0


def routing_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hetserve routing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="validate a routing file (or a fleet file's routing section)")
    check.add_argument("file")
    for name, text in (("apply", "replace a running gateway's routing (PUT /admin/routing)"),
                       ("show", "print a running gateway's routing (GET /admin/routing)")):
        p = sub.add_parser(name, help=text)
        if name == "apply":
            p.add_argument("file")
        p.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default %(default)s)")
        p.add_argument("--admin-key", help="the gateway's --admin-key (default: $HETSERVE_ADMIN_KEY)")
        p.add_argument("--timeout", type=float, default=10.0)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    body = None
    if args.action in ("check", "apply"):
        try:
            body = _read(args.file)
        except RoutingConfigError as exc:
            print(f"hetserve routing: {exc}", file=sys.stderr)
            return 2
        if args.action == "check":
            print(yaml.safe_dump(body, sort_keys=False), end="")
            return 0
    try:
        with _client(args) as client:
            if args.action == "show":
                return _answer(client.get("/admin/routing"))
            return _answer(client.put("/admin/routing", content=json.dumps(body),
                                      headers={"Content-Type": "application/json"}))
    except httpx.HTTPError as exc:
        print(f"hetserve routing: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
