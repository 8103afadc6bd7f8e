"""EfficiencyProfile: bucket lookup, online updates, JSON round trip, bad files."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from routing import Cell, EfficiencyProfile, ProfileBook, ProfileError


def _profile() -> EfficiencyProfile:
    return EfficiencyProfile(
        "rngd-a", "furiosa-rngd", "llama-8b",
        batch_buckets=(1, 4, 16), seq_buckets=(512, 2048),
        created=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        cells=[
            Cell(4, 512, throughput_tok_s=900.0, ttft_ms=80.0, tpot_ms=12.0, watts=120.0,
                 j_per_token=0.41, cost_per_mtok=0.9, samples=37, provenance="calibrated"),
            Cell(16, 2048, feasible=False),
        ],
    )


def test_lookup_rounds_up_to_buckets():
    p = _profile()
    assert p.lookup(3, 300).j_per_token == 0.41
    assert p.lookup(4, 512).j_per_token == 0.41
    assert p.lookup(5, 512) is None  # batch 16 bucket, no data


def test_batch_past_last_bucket_clamps_and_seq_past_last_is_infeasible():
    p = _profile()
    assert p.lookup(999, 2000).feasible is False  # the (16, 2048) cell
    over = p.lookup(1, 2049)
    assert over is not None and over.feasible is False


def test_observe_moves_cell_toward_observations_and_raises_confidence():
    p = _profile()
    before = p.lookup(4, 512)
    after = p.observe(4, 512, j_per_token=0.81, tpot_ms=20.0)
    assert 0.41 < after.j_per_token < 0.81
    assert after.tpot_ms > 12.0 and after.ttft_ms == 80.0  # untouched metric kept
    assert after.samples == 38 and after.confidence > before.confidence
    assert after.provenance == "calibrated"  # one online sample among 38


def test_calibrated_cell_turns_online_once_online_samples_dominate():
    p = _profile()
    for _ in range(38):
        cell = p.observe(4, 512, j_per_token=0.2)
    assert cell.provenance == "online" and cell.online_samples == 38
    assert abs(cell.j_per_token - 0.2) < 0.1


def test_first_observation_replaces_empty_or_modelled_cell():
    p = _profile()
    cell = p.observe(1, 100, j_per_token=1.5, watts=60.0)
    assert (cell.batch, cell.seq_len) == (1, 512)
    assert cell.j_per_token == 1.5 and cell.provenance == "online" and cell.samples == 1
    assert p.lookup(1, 512) is cell


def test_observe_off_grid_records_nothing_and_rejects_unknown_metric():
    p = _profile()
    assert p.observe(1, 10_000, j_per_token=1.0) is None
    with pytest.raises(ValueError, match="joules"):
        p.observe(1, 100, joules=1.0)


def test_json_round_trip(tmp_path):
    p = _profile()
    path = tmp_path / "rngd-a.json"
    p.save(path)
    q = EfficiencyProfile.load(path)
    assert q.to_dict() == p.to_dict()
    assert q.lookup(4, 512) == p.lookup(4, 512)
    assert q.created == p.created
    assert json.loads(path.read_text())["schema_version"] == 1


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda d: d["cells"][0].update(tpot_ms="fast"), "cells[0].tpot_ms"),
        (lambda d: d["cells"][1].update(colour="red"), "cells[1].colour"),
        (lambda d: d["cells"][0].update(batch=3), "cells[0].batch"),
        (lambda d: d["cells"][0].update(provenance="guessed"), "cells[0].provenance"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d.update(seq_buckets=[2048, 512]), "seq_buckets"),
        (lambda d: d.pop("pool"), "pool"),
    ],
)
def test_bad_profile_names_the_bad_key(tmp_path, mutate, where):
    data = _profile().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as e:
        EfficiencyProfile.load(path)
    assert where in str(e.value) and "bad.json" in str(e.value)


def test_duplicate_cell_is_an_error():
    data = _profile().to_dict()
    data["cells"].append(dict(data["cells"][0]))
    with pytest.raises(ProfileError, match=r"cells\[2\]: duplicate"):
        EfficiencyProfile.from_dict(data)


def test_book_saves_and_loads_a_directory(tmp_path):
    other = EfficiencyProfile("h100", "nvidia-h100", "llama-8b", cells=[Cell(64, 512, j_per_token=0.15)])
    ProfileBook([_profile(), other]).save_dir(tmp_path)
    book = ProfileBook.load_dir(tmp_path)
    assert sorted(book) == ["h100", "rngd-a"]
    assert book["h100"].lookup(50, 400).j_per_token == 0.15
    with pytest.raises(ProfileError, match="two profiles"):
        book.add(other)
