"""Scenario files: several named runs in one YAML file, so an A/B test is one command.

::

    out: results/policy-ab          # optional; --out overrides
    defaults:                       # merged under every run (nested keys too)
      model: tiny-llama
      load: {arrival: poisson, rate: 8, duration_s: 60}
      data: {lengths: mixed, seed: 1}
      slo: {ttft_ms: 500, tpot_ms: 50}
    runs:                           # the policy is the gateway's: one gateway per policy
      - label: efficiency
        base_url: http://127.0.0.1:8000
      - label: latency
        base_url: http://127.0.0.1:8001
      - label: efficiency-tight-slo
        base_url: http://127.0.0.1:8000
        headers: {x-hetserve-slo-ttft-ms: "200"}

Each run is a :class:`loadtests.config.RunSpec`; errors name the key
(``runs.1.load.rate: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loadtests.config import RunSpec, describe_validation_error


class ScenarioError(ValueError):
    pass


class _ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]] = Field(min_length=1)


class Scenario(BaseModel):
    out: str | None
    runs: list[RunSpec]


def load_scenario(path: str | Path) -> Scenario:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(f"{path}: {e}") from None
    try:
        file = _ScenarioFile.model_validate(raw if raw is not None else {})
    except ValidationError as e:
        raise ScenarioError(f"{path}:\n{describe_validation_error(e)}") from None
    runs = []
    for i, run in enumerate(file.runs):
        try:
            runs.append(RunSpec.model_validate(_merge(file.defaults, run)))
        except ValidationError as e:
            raise ScenarioError(f"{path}:\n{describe_validation_error(e, prefix=f'runs.{i}')}") from None
    labels = [r.label for r in runs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ScenarioError(f"{path}: runs.label: repeated label(s) {', '.join(duplicates)}; reports would overwrite")
    return Scenario(out=file.out, runs=runs)


def _merge(base: dict, override: dict) -> dict:
    """``override`` over ``base``, recursing into mappings present in both."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
