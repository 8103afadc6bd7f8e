"""``hetserve loadtest``: run load tests, compare reports, run scenarios, make traces.

With no subcommand (or flags only) it behaves as ``run``. Exit codes: 0 done,
1 the run could not start or stopped on its error-rate limit, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from loadtests import report, runner
from loadtests.config import DataSpec, LoadSpec, RunSpec, describe_validation_error
from loadtests.metrics import Targets
from loadtests.scenario import ScenarioError, load_scenario
from fleet.trace import TraceError, write_trace
from loadtests.workloads import ARRIVALS, LENGTH_PROFILES, generate_trace

SUBCOMMANDS = ("run", "compare", "scenario", "trace")


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request would flood the console
    parser = build_parser()
    try:
        args = parse_args(parser, sys.argv[1:] if argv is None else argv)
        return args.handler(args, parser)
    except SystemExit as e:  # argparse's errors and --help, as a return code
        return e.code if isinstance(e.code, int) else 2


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, reading a command line that does not start with a subcommand as ``run``."""
    argv = list(argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv.insert(0, "run")
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hetserve loadtest",
        description="Load-test an OpenAI-compatible server; report latency, goodput, energy and pools. "
        "Without a subcommand, 'run' is assumed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,compare,scenario,trace}")
    _add_run(sub.add_parser("run", help="run one load test (the default)"))

    compare = sub.add_parser("compare", help="compare two JSON reports side by side")
    compare.add_argument("a", metavar="A.json")
    compare.add_argument("b", metavar="B.json")
    compare.set_defaults(handler=_compare)

    scenario = sub.add_parser("scenario", help="run every run of a YAML scenario file, then compare them")
    scenario.add_argument("file")
    scenario.add_argument("--out", help="report folder (overrides the file's 'out')")
    scenario.add_argument("--no-progress", action="store_true")
    scenario.set_defaults(handler=_scenario)

    trace = sub.add_parser("trace", help="trace files")
    trace_sub = trace.add_subparsers(dest="trace_command", required=True)
    _add_trace_generate(trace_sub.add_parser("generate", help="write a seeded synthetic trace (JSONL)"))
    return parser


def _add_run(p: argparse.ArgumentParser) -> None:
    target = p.add_argument_group("target")
    target.add_argument("--base-url", default="http://127.0.0.1:8000",
                        help="the server, with or without the OpenAI-style /v1 (default http://127.0.0.1:8000)")
    target.add_argument("--model", help="default: the trace's model, else the server's first model")
    target.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="default: $OPENAI_API_KEY")
    target.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    target.add_argument("--no-stream", action="store_true", help="non-streaming requests (TTFT = E2E)")
    target.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="extra request header, e.g. x-hetserve-slo-ttft-ms:200 (repeatable)")
    target.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, s")

    load = p.add_argument_group("load")
    load.add_argument("--arrival", choices=(*ARRIVALS, "closed", "ramp", "sweep", "trace"),
                      help="default: closed with --concurrency, trace with a trace dataset, else poisson")
    load.add_argument("--rate", type=float, help="requests/s (start rate of ramp and sweep)")
    load.add_argument("--rate-end", type=float, help="final rate of a ramp")
    load.add_argument("--burstiness", type=float, default=1.0, help="gamma arrivals' coefficient of variation")
    load.add_argument("--concurrency", type=int, help="closed loop: requests in flight")
    load.add_argument("--duration", type=float, help="stop sending after this many seconds (per sweep step)")
    load.add_argument("--requests", type=int,
                      help="stop after this many requests (per sweep step); default: 200 synthetic, the whole trace")
    load.add_argument("--max-error-rate", type=float, help="stop when this fraction of requests fails")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", nargs="+", default=["synthetic"], metavar="synthetic|trace FILE")
    data.add_argument("--lengths", choices=LENGTH_PROFILES, default="chat", help="synthetic length profile")
    data.add_argument("--prompt-tokens", type=int, help="fixed prompt length (overrides the profile)")
    data.add_argument("--output-tokens", type=int, help="fixed output length, sent as max_tokens")
    data.add_argument("--shared-prefix-tokens", type=int, default=0, help="common prefix of every prompt")
    data.add_argument("--tokenizer", help="tokenizer.json (or its folder) for exact prompt lengths")
    data.add_argument("--seed", type=int, default=0)

    slo = p.add_argument_group("goodput targets")
    slo.add_argument("--slo-ttft-ms", type=float)
    slo.add_argument("--slo-tpot-ms", type=float)
    slo.add_argument("--slo-e2e-ms", type=float)

    out = p.add_argument_group("output")
    out.add_argument("--label", default="run", help="names the report files")
    out.add_argument("--out", help="write LABEL.json, LABEL.csv and LABEL.html here")
    out.add_argument("--no-progress", action="store_true")
    out.add_argument("--no-energy", action="store_true", help="skip the /v1/fleet snapshots")
    p.set_defaults(handler=_run)


def _add_trace_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="trace file to write (JSONL)")
    p.add_argument("--model", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--requests", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--arrival", choices=ARRIVALS, default="poisson")
    p.add_argument("--burstiness", type=float, default=1.0)
    p.add_argument("--rate-end", type=float, help="ramp linearly to this rate over --duration")
    p.add_argument("--lengths", choices=LENGTH_PROFILES, default="chat")
    p.add_argument("--prompt-tokens", type=int)
    p.add_argument("--output-tokens", type=int)
    p.add_argument("--slo-ttft-ms", type=float)
    p.add_argument("--slo-tpot-ms", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_trace_generate)


def run_spec_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunSpec:
    """The run the flags describe; usage errors exit through ``parser.error``."""
    dataset, trace = _dataset(args.dataset, parser)
    arrival = args.arrival or ("trace" if trace else "closed" if args.concurrency else "poisson")
    headers = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {item!r}: expected NAME:VALUE")
        headers[name.strip()] = value.strip()
    try:
        return RunSpec(
            label=args.label,
            base_url=args.base_url,
            model=args.model,
            api_key=args.api_key,
            endpoint=args.endpoint,
            stream=not args.no_stream,
            headers=headers,
            timeout_s=args.timeout,
            energy=not args.no_energy,
            load=LoadSpec(
                arrival=arrival,
                rate=args.rate,
                rate_end=args.rate_end,
                burstiness=args.burstiness,
                concurrency=args.concurrency,
                duration_s=args.duration,
                requests=args.requests,
                max_error_rate=args.max_error_rate,
            ),
            data=DataSpec(
                dataset=dataset,
                trace=trace,
                lengths=args.lengths,
                prompt_tokens=args.prompt_tokens,
                output_tokens=args.output_tokens,
                shared_prefix_tokens=args.shared_prefix_tokens,
                tokenizer=args.tokenizer,
                seed=args.seed,
            ),
            slo=Targets(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms, e2e_ms=args.slo_e2e_ms),
        )
    except ValidationError as e:
        parser.error(describe_validation_error(e))


def _dataset(values: list[str], parser: argparse.ArgumentParser) -> tuple[str, str | None]:
    if values == ["synthetic"]:
        return "synthetic", None
    if len(values) == 2 and values[0] == "trace":
        return "trace", values[1]
    parser.error("--dataset: expected 'synthetic' or 'trace FILE'")


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    spec = run_spec_from_args(args, parser)
    return _execute([spec], args.out, not args.no_progress)


def _scenario(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        scenario = load_scenario(args.file)
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return 2
    return _execute(scenario.runs, args.out or scenario.out, not args.no_progress)


def _execute(specs: list[RunSpec], out: str | None, progress: bool) -> int:
    """Run each spec in turn, print and write its reports; compare runs when there are several."""
    code = 0
    reports: list[Path] = []
    for spec in specs:
        try:
            outcome = asyncio.run(runner.run(spec, progress=progress))
        except (runner.RunError, TraceError) as e:
            print(f"{spec.label}: {e}", file=sys.stderr)
            return 1
        print(report.console_summary(outcome))
        if out:
            paths = report.write_reports(outcome, out)
            reports.append(paths[0])
            print("reports: " + ", ".join(str(p) for p in paths))
        if outcome.stopped_by == "error_rate":
            code = 1
    for other in reports[1:]:
        print()
        print(report.compare(reports[0], other))
    return code


def _compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        print(report.compare(args.a, args.b))
    except (OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    return 0


def _trace_generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.requests is None and args.duration is None:
        parser.error("give --requests, --duration or both")
    try:
        records = generate_trace(
            model=args.model,
            rate=args.rate,
            n=args.requests,
            duration=args.duration,
            arrival=args.arrival,
            burstiness=args.burstiness,
            rate_end=args.rate_end,
            lengths=args.lengths,
            prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens,
            slo_ttft_ms=args.slo_ttft_ms,
            slo_tpot_ms=args.slo_tpot_ms,
            seed=args.seed,
        )
    except (ValueError, ValidationError) as e:
        parser.error(str(e))
    write_trace(args.out, records)
    print(f"wrote {len(records)} requests to {args.out}")
    return 0
