import asyncio
import base64
import csv
import json

import httpx
import pytest

from loadtests.config import DataSpec, LoadSpec, RunSpec
from loadtests.fake_server import FakeConfig, FakeOpenAI
from loadtests.report import compare, console_summary, load_summary, write_reports
from loadtests.runner import run


def _outcome(label, load, statuses=(200,), pools=("gpu-a", "npu-b")):
    fake = FakeOpenAI(FakeConfig(ttft_s=0.002, itl_s=0.0005, statuses=statuses, pools=pools))
    spec = RunSpec(label=label, base_url="http://fake", load=load, api_key="secret-key",
                   data=DataSpec(prompt_tokens=16, output_tokens=4), timeout_s=10)

    async def go():
        async with httpx.AsyncClient(transport=fake.mock_transport()) as client:
            return await run(spec, client=client, progress=False)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def outcome():
    return _outcome("base", LoadSpec(arrival="constant", rate=500, requests=20), statuses=(200, 200, 200, 200, 429))


def test_files_are_written_with_every_request(outcome, tmp_path):
    paths = write_reports(outcome, tmp_path)
    assert [p.name for p in paths] == ["base.json", "base.csv", "base.html"]
    data = json.loads(paths[0].read_text())
    assert len(data["requests"]) == 20
    assert data["summary"]["errors"] == {"http_429": 4}
    assert "api_key" not in data["spec"] and "secret-key" not in paths[0].read_text()
    ok = next(r for r in data["requests"] if r["error_type"] is None)
    assert len(ok["chunk_ms"]) == 4 and ok["ttft_ms"] == ok["chunk_ms"][0]
    rows = list(csv.DictReader(paths[1].open()))
    assert len(rows) == 20 and {r["pool"] for r in rows} >= {"gpu-a", "npu-b"}


def test_html_embeds_images_and_headline_numbers(outcome, tmp_path):
    html = write_reports(outcome, tmp_path)[2].read_text()
    images = html.split('src="data:image/png;base64,')[1:]
    assert len(images) == 3
    assert base64.b64decode(images[0].split('"')[0])[:8] == b"\x89PNG\r\n\x1a\n"
    s = outcome.summary
    for headline in (f"{s.request_throughput:.2f} req/s", f"{s.ttft_ms.p50:.1f} ms", f"{s.ttft_ms.p99:.1f} ms",
                     f"{s.goodput:.2f} req/s", f"{s.energy.j_per_token:.3f} J"):
        assert headline in html
    assert "<link" not in html and "<script" not in html  # self-contained


def test_sweep_report_has_the_rate_plot(tmp_path):
    sweep = _outcome("sweep", LoadSpec(arrival="sweep", rate=50, duration_s=0.1, sweep_max_steps=2))
    html = write_reports(sweep, tmp_path)[2].read_text()
    assert "Sweep: throughput and latency vs offered rate" in html
    assert html.count("data:image/png;base64,") == 4
    assert "rate" in console_summary(sweep).splitlines()[-3]


def test_console_summary_names_errors_pools_and_energy(outcome):
    text = console_summary(outcome)
    assert "http_429 4" in text
    assert "gpu-a 50%" in text
    assert "0.1500 / 0.2250" in text  # fake: 0.1 and 0.2 J/token on two equal pools, idle adds half


def test_compare_puts_ratios_side_by_side(outcome, tmp_path):
    other = _outcome("gpu-only", LoadSpec(arrival="constant", rate=500, requests=20), pools=("gpu-a",))
    a = write_reports(outcome, tmp_path)[0]
    b = write_reports(other, tmp_path)[0]
    assert load_summary(a)[0] == "base"
    table = compare(a, b)
    header, *rows = table.splitlines()
    assert header.split() == ["base", "gpu-only", "B/A"]
    j_row = next(r for r in rows if r.startswith("J/token attributed"))
    assert j_row.split()[-3:] == ["0.15", "0.1", "0.67"]
    share = next(r for r in rows if r.startswith("Share on npu-b"))
    assert share.split()[-3:] == ["50", "0", "0.00"]


def test_compare_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a hetserve-loadtest"):
        compare(path, path)
