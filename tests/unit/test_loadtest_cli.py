import asyncio
import json
import threading

import pytest

from loadtests.cli import build_parser, main, parse_args, run_spec_from_args
from loadtests.fake_server import FakeConfig, FakeOpenAI
from fleet.trace import read_trace


def _spec(*argv):
    parser = build_parser()
    return run_spec_from_args(parse_args(parser, list(argv)), parser)


def test_no_subcommand_means_run():
    spec = _spec("--rate", "5", "--requests", "10", "--slo-ttft-ms", "200")
    assert (spec.load.arrival, spec.load.rate, spec.load.requests) == ("poisson", 5.0, 10)
    assert spec.slo.ttft_ms == 200


def test_arrival_defaults_follow_the_flags(tmp_path):
    assert _spec("--concurrency", "4").load.arrival == "closed"
    trace = _spec("--dataset", "trace", str(tmp_path / "t.jsonl"))
    assert (trace.load.arrival, trace.data.trace) == ("trace", str(tmp_path / "t.jsonl"))
    ramp = _spec("--arrival", "ramp", "--rate", "1", "--rate-end", "9", "--duration", "60")
    assert (ramp.load.rate_end, ramp.load.duration_s) == (9, 60)
    headers = _spec("--rate", "1", "--header", "x-hetserve-slo-ttft-ms: 200").headers
    assert headers == {"x-hetserve-slo-ttft-ms": "200"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arrival", "poisson"], "needs a rate"),
        (["--arrival", "ramp", "--rate", "1"], "needs rate_end and duration_s"),
        (["--rate", "1", "--dataset", "trace"], "expected 'synthetic' or 'trace FILE'"),
        (["--rate", "1", "--header", "novalue"], "expected NAME:VALUE"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_return_2_and_say_why(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_returns_0(capsys):
    assert main(["--help"]) == 0
    assert "{run,compare,scenario,trace}" in capsys.readouterr().out


def test_trace_generate_writes_a_readable_trace(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    argv = ["trace", "generate", "--out", str(out), "--model", "m", "--rate", "10", "--requests", "25",
            "--arrival", "gamma", "--burstiness", "2", "--lengths", "long-doc", "--slo-ttft-ms", "500"]
    assert main(argv) == 0
    records = read_trace(out)
    assert len(records) == 25 and all(r.slo_ttft_ms == 500 and r.prompt_tokens >= 1024 for r in records)


def test_scenario_errors_name_the_key(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(
        "defaults: {load: {arrival: poisson, rate: 1}}\n"
        "runs:\n  - label: a\n  - label: b\n    load: {rate: -2}\n"
    )
    assert main(["scenario", str(path)]) == 2
    assert "runs.1.load.rate" in capsys.readouterr().err


def test_a_misspelt_slo_target_is_an_error_not_no_target(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("defaults: {load: {arrival: poisson, rate: 1}}\nruns:\n  - label: a\n    slo: {ttft: 500}\n")
    assert main(["scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert "runs.0.slo.ttft" in err and "Extra inputs are not permitted" in err


@pytest.fixture
def fake_url():
    """The fake server on a free loopback port, in a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(FakeOpenAI(FakeConfig(ttft_s=0.003, itl_s=0.001)).serve("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    server.close()
    loop.close()


def test_ab_scenario_over_a_real_socket(fake_url, tmp_path, capsys):
    path = tmp_path / "ab.yaml"
    path.write_text(
        f"""
defaults:
  base_url: {fake_url}
  timeout_s: 10
  load: {{arrival: constant, rate: 200, requests: 20}}
  data: {{prompt_tokens: 16, output_tokens: 5}}
runs:
  - label: energy
    headers: {{x-hetserve-policy: energy}}
  - label: latency
    load: {{arrival: closed, concurrency: 4}}
"""
    )
    assert main(["scenario", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "hetserve load test: energy" in out and "hetserve load test: latency" in out
    assert "B/A" in out  # the two runs compared
    report = json.loads((tmp_path / "out" / "latency.json").read_text())
    assert report["summary"]["ok"] == 20 and report["summary"]["energy"]["j_per_token"] > 0
    assert main(["compare", str(tmp_path / "out" / "energy.json"), str(tmp_path / "out" / "latency.json")]) == 0
