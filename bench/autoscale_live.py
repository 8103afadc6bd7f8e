"""The efficiency-aware policy live on Ray Serve: replica counts under a burst.

Run: ``python bench/autoscale_live.py`` → ``bench/results/autoscale_live.json``.

Starts a local Ray cluster, deploys the Serve config ``hetserve config``
writes for a two-pool emulated fleet (H100 and ATOM, both autoscaled with
``efficiency: true``, small targets so a few streams are load) the way
``serve deploy`` does (the controller's ``apply_config``), holds concurrent
streaming requests through the gateway for a while, then stops them, and
records each pool's running replicas once a second from ``serve.status()``.
``--rule serve`` runs the same fleet under Serve's own per-pool rule
(``workers.autoscaling.sequences_policy``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import ray
import yaml
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from deploy.serve_config import APP_NAME, serve_config
from fleet.config import parse_fleet

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SCALING = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2, "upscale_delay_s": 2,
           "downscale_delay_s": 10, "startup_s": 2}


def fleet(port: int, efficiency: bool) -> dict:
    pool = {"engine": "emulated", "model": "llama-3.1-8b", "models": [MODEL], "max_ongoing_requests": 8,
            "engine_args": {"max_batch": 8}, "autoscaling": {**SCALING, "efficiency": efficiency}}
    return {"gateway": {"port": port, "host": "127.0.0.1"},
            "routing": {"policy": "efficiency", "slo": {"ttft_ms": 5000, "tpot_ms": 200}},
            "pools": [{**pool, "name": "h100", "hardware": "h100"}, {**pool, "name": "atom", "hardware": "atom"}]}


def replicas() -> dict[str, int]:
    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return {}
    return {name: int(d.replica_states.get("RUNNING", 0)) for name, d in app.deployments.items()}


async def stream(client: httpx.AsyncClient, url: str, stop: asyncio.Event) -> int:
    n = 0
    while not stop.is_set():
        body = {"model": MODEL, "prompt": "hello " * 64, "max_tokens": 400, "stream": True}
        async with client.stream("POST", url, json=body) as r:
            async for _ in r.aiter_lines():
                pass
        n += 1
    return n


async def drive(url: str, streams: int, load_s: float, quiet_s: float) -> list[dict]:
    timeline, stop, t0 = [], asyncio.Event(), time.monotonic()
    async with httpx.AsyncClient(timeout=120) as client:
        tasks = [asyncio.create_task(stream(client, url, stop)) for _ in range(streams)]
        while time.monotonic() - t0 < load_s + quiet_s:
            if time.monotonic() - t0 >= load_s:
                stop.set()
            timeline.append({"t": round(time.monotonic() - t0, 1), "load": not stop.is_set(), **replicas()})
            await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return timeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=18651)
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--load-s", type=float, default=40.0)
    ap.add_argument("--quiet-s", type=float, default=45.0)
    ap.add_argument("--rule", choices=("efficiency", "serve"), default="efficiency",
                    help="the efficiency-aware application policy, or Serve's own rule per pool")
    ap.add_argument("--out", default=None, help="default: bench/results/autoscale_live[_serve].json")
    a = ap.parse_args()
    out = a.out or f"bench/results/autoscale_live{'' if a.rule == 'efficiency' else '_serve'}.json"
    os.environ.pop("RAY_ADDRESS", None)
    spec = fleet(a.port, a.rule == "efficiency")
    config = serve_config(parse_fleet(spec), host="127.0.0.1", port=a.port)
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="hetserve-bench",
                 _temp_dir=str(Path(tmp) / "ray"))
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": a.port})
            _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)
            url = f"http://127.0.0.1:{a.port}/v1/completions"
            timeline = asyncio.run(drive(url, a.streams, a.load_s, a.quiet_s))
        finally:
            serve.shutdown()
            ray.shutdown()
    app = config["applications"][0]
    policy = (app["autoscaling_policy"]["policy_function"] if "autoscaling_policy" in app else
              next(d["autoscaling_config"] for d in app["deployments"] if "autoscaling_config" in d)
              ["policy"]["policy_function"])
    doc = {"fleet": spec, "autoscaling_policy": policy, "streams": a.streams, "load_s": a.load_s,
           "timeline": timeline}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    for row in timeline:
        print(yaml.safe_dump(row, default_flow_style=True).strip())


if __name__ == "__main__":
    main()
