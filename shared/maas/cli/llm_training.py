"""`maas train` for an LLM recipe (smollm2-135m): import, export, check, measure and publish; no training.

fp32 is published only when it matches transformers. Each quantized precision is published only when it
passes its gate; one that fails is reported with its numbers. Asked for explicitly (`--quantize`), a
refused precision fails the command before anything is published, as the supervised recipes' int8 does;
by default (int8 and int4, "where it holds") the others are published without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from maas.cli import common

if TYPE_CHECKING:
    from maas.training.llm.build import BuiltVersion, LlmRun

DRAFT_FILE = "draft.json"
DEFAULT_PRECISIONS = ("int8", "int4")
# `maas train` flags that only mean something to a recipe that trains.
TRAINING_FLAGS = (
    ("config", "--config"),
    ("epochs", "--epochs"),
    ("seed", "--seed"),
    ("external_data", "--external-data"),
    ("search", "--search"),
    ("trials", "--trials"),
    ("checkpoint_dir", "--checkpoint-dir"),
    # The int8 speed gate times a trained recipe's int8 graph; an LLM's int4 build has no such gate.
    ("min_int8_speedup", "--min-int8-speedup"),
)


def is_llm_recipe(name: str) -> bool:
    from maas.training.llm.recipes import LLM_RECIPES

    return name in LLM_RECIPES


def llm_train_command(args: argparse.Namespace) -> int:
    from maas.errors import InvalidInput
    from maas.registry import validate_name
    from maas.training.llm.build import build_llm, ensure_llm_publishable, publish_llm
    from maas.training.llm.recipes import LLM_RECIPES

    for attribute, flag in TRAINING_FLAGS:
        if getattr(args, attribute, None) not in (None, False):
            raise InvalidInput(
                f"{flag}: recipe {args.recipe!r} imports pretrained weights and trains nothing; "
                "expected only --quantize, --max-degradation, --publish/--no-publish and --out"
            )
    if args.publish is not None:
        validate_name(args.publish)
    recipe = LLM_RECIPES[args.recipe]
    if args.max_degradation is not None:
        gates = {
            precision: dataclasses.replace(gate, max_increase=args.max_degradation)
            for precision, gate in recipe.gates.items()
        }
        recipe = dataclasses.replace(recipe, gates=gates)
    explicit = args.quantize is not None
    precisions = list(dict.fromkeys(args.quantize or DEFAULT_PRECISIONS))

    # The build takes minutes: a store that cannot be reached fails before it, not after.
    registry = None if args.no_publish else common.reachable_registry()
    with tempfile.TemporaryDirectory(prefix="maas-llm-") as work:
        run = build_llm(recipe, Path(work), precisions)
        print(f"built {recipe.name}")
        print(common.table(_result_rows(run)))
        if args.out is not None:
            _write_out(args.out, run)
        # Every gate that must hold before the first write: a failure publishes nothing.
        ensure_llm_publishable(run.fp32)
        for built in run.quantized:
            if built.refusal is not None:
                print(f"refused {built.precision}: {built.refusal.message}", file=sys.stderr)
                if explicit:
                    raise built.refusal
        if registry is None:
            return 0
        fp32 = publish_llm(run, run.fp32, registry, args.publish)
        print(f"published {fp32.name} version {fp32.version} (fp32)")
        for built in run.quantized:
            if built.refusal is None:
                manifest = publish_llm(run, built, registry, fp32.name, base_version=fp32.version)
                print(
                    f"published {manifest.name} version {manifest.version} "
                    f"({built.precision}, from version {fp32.version})"
                )
        # Every new version is the latest; which one `NAME` serves is the alias's business.
        print(f"note: choose what {fp32.name} serves with an alias, e.g.")
        print(f"      maas models alias {fp32.name} production {fp32.version}")
    return 0


def _result_rows(run: LlmRun) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        ("PRECISION", "PERPLEXITY", "VS FP32", "GREEDY", "PARITY MAX |Δ|", "MB", "EXPORT S", "STATUS")
    ]
    fp32_perplexity = run.fp32.draft.metrics["perplexity"]
    for built in [run.fp32, *run.quantized]:
        draft = built.draft
        value = draft.metrics["perplexity"]
        if built is run.fp32:
            greedy = draft.evaluation["greedy_vs_transformers"]
            agreement = "identical" if greedy["identical"] else "differs"
        else:
            agreement = f"{draft.metrics['greedy_agreement']:.1%}"
        parity = f"{draft.parity.max_abs_diff:.2g}" if draft.parity is not None else "-"
        rows.append(
            (
                built.precision,
                f"{value:.4f}",
                f"{value / fp32_perplexity - 1:+.2%}",
                agreement,
                parity,
                f"{built.bytes / 1e6:.0f}",
                f"{built.export_seconds:.1f}",
                "refused" if built.refusal is not None else "ok",
            )
        )
    return rows


def _write_out(directory: Path, run: LlmRun) -> None:
    """fp32's files, card and draft in `directory`, each quantized precision's in a subfolder of its name."""
    for built in [run.fp32, *run.quantized]:
        target = directory if built is run.fp32 else directory / built.precision
        _write_version(target, run, built)
        print(f"wrote {built.precision} to {target}")


def _write_version(target: Path, run: LlmRun, built: BuiltVersion) -> None:
    from maas.training.llm.export import PUBLISHED_FILES

    target.mkdir(parents=True, exist_ok=True)
    # Copied, not read: the fp32 weights alone are half a gigabyte.
    for name in PUBLISHED_FILES:
        shutil.copyfile(built.folder / name, target / name)
    for name, data in run.card_files(built).items():
        (target / name).write_bytes(data)
    (target / DRAFT_FILE).write_text(built.draft.model_dump_json(indent=2) + "\n", encoding="utf-8")
