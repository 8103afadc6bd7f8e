"""The ``hetserve`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time


def _serve(args: argparse.Namespace) -> int:
    from fleet.config import FleetConfigError, load_fleet

    try:
        fleet, base_dir = load_fleet(args.fleet)
    except FleetConfigError as exc:
        print(f"hetserve: invalid fleet: {exc}", file=sys.stderr)
        return 2
    from gateway.auth import KeysError, fleet_keys

    try:  # fail here, not in the gateway replica: a bad keys file is the operator's to fix
        fleet_keys(fleet.gateway.api_keys, fleet.gateway.keys_file, base_dir)
    except KeysError as exc:
        print(f"hetserve: invalid API keys: {exc}", file=sys.stderr)
        return 2
    from hetserve import supervise

    if not supervise.is_child():  # see hetserve/supervise.py: a group SIGTERM must still drain
        g = fleet.gateway
        return supervise.run(args.argv, g.drain_timeout_s + g.shutdown_timeout_s)
    if args.record_trace:
        fleet.gateway.record_trace = args.record_trace
    from gateway import server

    try:
        running = server.start(
            fleet, host=args.host, port=args.port, address=args.address, num_cpus=args.num_cpus,
            admin_key=args.admin_key, base_dir=base_dir,
        )
    except server.DeploymentFailed as exc:
        for name, why in exc.reasons.items():
            print(f"hetserve: did not start: {name}: {why}", file=sys.stderr)
        print("hetserve: nothing was left deployed", file=sys.stderr)
        return 1
    print(f"hetserve: serving {', '.join(fleet.models())} at {running.url}/v1 ({running.started_s:.1f} s to start)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_announce_ready, args=(server, running, stop), daemon=True).start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    g = fleet.gateway
    print(f"hetserve: shutting down: draining requests in flight (at most {g.drain_timeout_s:.0f} s)", flush=True)
    left = server.drain(g.drain_timeout_s)
    if left is None:
        print("hetserve: the gateway did not answer the drain; stopping anyway", flush=True)
    elif left:
        print(f"hetserve: {left} request(s) still in flight after the drain; stopping anyway", flush=True)
    clean = server.stop(running, timeout_s=g.shutdown_timeout_s)
    print("hetserve: stopped" + ("" if clean else " (left-over processes were killed)"), flush=True)
    if not clean:
        # A Ray call may still hang in a thread; atexit hooks (Ray's shutdown) could hang on it too.
        sys.stdout.flush()
        os._exit(1)
    return 0


def _announce_ready(server, running, stop: threading.Event) -> None:
    t0 = time.monotonic()
    if server.wait_ready(running.url, stop):
        print(
            f"hetserve: every pool is ready ({running.started_s + time.monotonic() - t0:.1f} s after start; "
            f"GET {running.url}/ready)",
            flush=True,
        )


def _delegated(command: str, argv: list[str]) -> int:
    """Subcommands with parsers of their own, imported only when used."""
    if command == "loadtest":
        from loadtests.cli import main
    elif command == "calibrate":
        from calibration.cli import calibrate_main as main
    elif command == "config":
        from deploy.cli import config_main as main
    elif command == "simulate":
        from sim.cli import simulate_main as main
    elif command == "plan":
        from plan.cli import plan_main as main
    elif command == "routing":
        from hetserve.routing_cli import routing_main as main
    else:
        from sim.cli import tune_main as main
    return main(argv)


DELEGATED = {
    "loadtest": "load-test an OpenAI-compatible endpoint and report latency, goodput and energy",
    "calibrate": "sweep live pools over batch x sequence length and write efficiency profiles",
    "simulate": "replay a trace through routing policies offline (virtual time)",
    "plan": "choose the cheapest (or least-energy) hardware mix that serves a trace within its SLOs",
    "tune": "search routing policy parameters offline and write a routing YAML",
    "routing": "check a routing YAML, apply it to a running gateway, or show the live one",
    "config": "write a Ray Serve config (serve deploy) or a KubeRay RayService for a fleet",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hetserve", description="OpenAI-compatible gateway over mixed-hardware pools")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the gateway and its pools")
    serve.add_argument("--fleet", help="fleet YAML (default: the embedded default fleet)")
    serve.add_argument("--host", help="bind address (default: the fleet's, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the fleet's, 8000)")
    serve.add_argument("--address", help="an existing Ray cluster to join (default: start a local one)")
    serve.add_argument("--num-cpus", type=int, help="CPUs for a local Ray cluster")
    serve.add_argument("--admin-key", help="key for the admin endpoints (live routing changes)")
    serve.add_argument("--record-trace", metavar="FILE", help="append every completed request to this JSONL trace")
    serve.set_defaults(func=_serve)

    for name, text in DELEGATED.items():
        sub.add_parser(name, help=f"{text} (see `hetserve {name} -h`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if argv and argv[0] in DELEGATED:
        return _delegated(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
