"""The `--config` file of `maas train`: recipe overrides plus optional search and quantization sections.

    # digits.yaml
    epochs: 80
    lr: 0.003
    search:
      sampler: tpe          # grid | random | tpe (the command line's --search wins)
      trials: 20
      space:
        lr: {low: 0.0003, high: 0.03, log: true}
        width: [16, 32, 64]
    quantization:
      max_degradation: 0.005   # in the primary metric's units
      per_channel: false       # default true: one scale per output channel
      min_speedup: 1.0         # int8 must run this many times as fast as fp32 (default 1.2; 0: no check)

YAML or JSON (YAML is a superset). Every other top-level key is a field of the recipe's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maas.errors import InvalidInput
from maas.training.search import Dimension, parse_space

SECTIONS = ("search", "quantization")


@dataclass(frozen=True)
class RunConfig:
    overrides: dict[str, Any] = field(default_factory=dict)
    sampler: str | None = None
    trials: int | None = None
    space: dict[str, Dimension] | None = None
    max_degradation: float | None = None
    per_channel: bool | None = None
    min_speedup: float | None = None


def load_run_config(path: Path) -> RunConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"--config: expected a readable file, got {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"--config {path}: expected YAML or JSON, got a parse error: {exc}") from None
    return parse_run_config(raw if raw is not None else {}, str(path))


def parse_run_config(raw: object, source: str = "config") -> RunConfig:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{source}: expected a mapping of config fields, got {type(raw).__name__}")
    overrides = {str(k): v for k, v in raw.items() if k not in SECTIONS}
    search = _section(raw, "search", source, {"sampler", "trials", "space"})
    quantization = _section(raw, "quantization", source, {"max_degradation", "per_channel", "min_speedup"})
    trials = search.get("trials")
    if trials is not None and (not isinstance(trials, int) or isinstance(trials, bool) or trials < 1):
        raise InvalidInput(f"{source}: search.trials: expected an integer >= 1, got {trials!r}")
    sampler = search.get("sampler")
    if sampler is not None and not isinstance(sampler, str):
        raise InvalidInput(f"{source}: search.sampler: expected grid, random or tpe, got {sampler!r}")
    space = search.get("space")
    if space is not None and not isinstance(space, Mapping):
        raise InvalidInput(f"{source}: search.space: expected a mapping, got {type(space).__name__}")
    max_degradation = _non_negative(quantization, "max_degradation", source)
    min_speedup = _non_negative(quantization, "min_speedup", source)
    per_channel = quantization.get("per_channel")
    if per_channel is not None and not isinstance(per_channel, bool):
        raise InvalidInput(f"{source}: quantization.per_channel: expected a boolean, got {per_channel!r}")
    return RunConfig(
        overrides=overrides,
        sampler=sampler,
        trials=trials,
        space=parse_space(space) if space is not None else None,
        max_degradation=max_degradation,
        per_channel=per_channel,
        min_speedup=min_speedup,
    )


def _non_negative(section: Mapping[str, Any], key: str, source: str) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
        raise InvalidInput(f"{source}: quantization.{key}: expected a number >= 0, got {value!r}")
    return float(value)


def _section(raw: Mapping[Any, Any], name: str, source: str, allowed: set[str]) -> Mapping[str, Any]:
    section = raw.get(name) or {}
    if not isinstance(section, Mapping):
        raise InvalidInput(f"{source}: {name}: expected a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise InvalidInput(f"{source}: {name}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")
    return section
