"""`maas train`, `maas export` and `maas publish`: everything that makes a new version.

Each command imports torch (through maas.training) only when it runs.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.cli import common
from maas.errors import MaasError

if TYPE_CHECKING:
    from maas.registry import Manifest, ManifestDraft, ModelRegistry
    from maas.training import TrainedModel
    from maas.training.run_config import RunConfig
    from maas.training.search import SearchPlan

# As maas.training.saved_runs names it; spelled here so `maas --help` imports nothing of training.
DRAFT_FILE = "draft.json"


def add_training_commands(commands: common.Commands) -> None:
    train = commands.add_parser(
        "train", help="train a recipe, evaluate its ONNX export, write its model card and publish it"
    )
    train.add_argument(
        "recipe", metavar="RECIPE", help="seed-mlp, digits-resnet, text-bert, minilm-embed or smollm2-135m"
    )
    train.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML/JSON: config fields, search and quantization"
    )
    train.add_argument("--epochs", type=int, help="maximum number of epochs")
    train.add_argument("--seed", type=int, help="seed for the split, the weights and the shuffling")
    train.add_argument("--external-data", action="store_true", help="store weights in model.onnx.data")
    train.add_argument("--search", choices=("grid", "random", "tpe"), help="hyperparameter search sampler")
    train.add_argument("--trials", type=int, metavar="N", help="search trials (grid: at most the grid)")
    train.add_argument(
        "--quantize",
        choices=("int8", "int4"),
        action="append",
        help="also publish a quantized version, gated on its metric: dynamic int8; for an LLM recipe int8 "
        "and/or int4 weight-only (repeat the flag; default for an LLM recipe: both, where each holds)",
    )
    train.add_argument(
        "--max-degradation",
        type=common.non_negative("number"),
        metavar="X",
        help="largest primary-metric loss int8 may have against fp32 (default: the recipe's); for an LLM "
        "recipe, the largest rise in held-out perplexity as a fraction of fp32's (default 0.01 int8, "
        "0.25 int4)",
    )
    train.add_argument(
        "--min-int8-speedup",
        type=common.non_negative("number"),
        metavar="X",
        help="how many times as fast as fp32 int8 must run on the recipe's benchmark input to be published "
        "(default 1.2; 0: no speed check)",
    )
    train.add_argument("--checkpoint-dir", metavar="DIR", help="keep the best-epoch state_dict in DIR")
    target = train.add_mutually_exclusive_group()
    target.add_argument("--publish", metavar="NAME", help="publish under NAME (default: the recipe's name)")
    target.add_argument("--no-publish", action="store_true", help="train and check only")
    train.add_argument(
        "--out", type=Path, metavar="DIR", help=f"also write the files and {DRAFT_FILE} to DIR"
    )
    train.set_defaults(command=train_command)

    export = commands.add_parser(
        "export", help="export your own nn.Module to ONNX, check parity against torch and publish it"
    )
    export.add_argument(
        "factory", metavar="MODULE:FACTORY", help="e.g. mymodels:make_model (called with no args)"
    )
    export.add_argument("--weights", type=Path, metavar="FILE", help="a state_dict saved with torch.save")
    export.add_argument(
        "--input",
        dest="inputs",
        action="append",
        required=True,
        metavar="NAME:TYPE:SHAPE",
        help="an input, e.g. 'x:FP32:[-1,10]' (-1: dynamic; repeat for each input, in forward order)",
    )
    export.add_argument(
        "--output",
        dest="outputs",
        action="append",
        metavar="NAME:TYPE:SHAPE",
        help="a declared output, checked against what the module returns",
    )
    export.add_argument("--seed", type=int, default=0, help="seed for the parity inputs")
    export.add_argument("--parity-tolerance", type=float, default=1e-4, metavar="X")
    export.add_argument("--external-data", action="store_true", help="store weights in model.onnx.data")
    export.add_argument("--description", default="", metavar="TEXT")
    _add_publish_target(export)
    export.set_defaults(command=export_command)

    publish = commands.add_parser(
        "publish",
        help="publish an existing ONNX file, or a folder `maas train --out` wrote (or a failed publish "
        "kept), after the same checks",
    )
    publish.add_argument(
        "model",
        type=Path,
        metavar="MODEL.onnx|DIR",
        help=f"an ONNX file, or a folder holding a trained model's files and {DRAFT_FILE} (and int8/)",
    )
    publish.add_argument("--name", required=True, metavar="NAME", help="the model's name in the registry")
    publish.add_argument("--description", default="", metavar="TEXT")
    publish.set_defaults(command=publish_command)

    synthesize = commands.add_parser(
        "synthesize",
        help="write a synthetic large model (a chain of fp32 MatMuls, seeded noise, weights as external "
        "data) to try what size does to publishing and serving; nothing is trained",
    )
    synthesize.add_argument("out", type=Path, metavar="DIR", help="where model.onnx and model.onnx.data go")
    synthesize.add_argument(
        "--gb",
        type=common.positive_number,
        default=2.75,
        metavar="GB",
        help="weights to write, in GB of 10^9 bytes, rounded up to whole layers (default: 2.75, past "
        "protobuf's 2 GiB)",
    )
    synthesize.add_argument(
        "--width", type=common.positive_integer, default=4096, help="each MatMul's size (default 4096)"
    )
    synthesize.add_argument("--seed", type=int, default=0, help="seed of the weights (default 0)")
    synthesize.set_defaults(command=synthesize_command)


def _add_publish_target(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--publish", metavar="NAME", help="publish under NAME")
    target.add_argument("--no-publish", action="store_true", help="export and check only")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help=f"also write the files and {DRAFT_FILE} to DIR"
    )


def train_command(args: argparse.Namespace) -> int:
    from maas.cli.llm_training import is_llm_recipe, llm_train_command
    from maas.errors import InvalidInput
    from maas.registry import validate_name
    from maas.training import ensure_publishable, publish_trained, train_recipe
    from maas.training.quantize import with_base_version
    from maas.training.run_config import RunConfig, load_run_config
    from maas.training.search import trial_table

    if is_llm_recipe(args.recipe):
        return llm_train_command(args)
    if args.quantize and "int4" in args.quantize:
        raise InvalidInput(
            f"--quantize int4: expected int8 for recipe {args.recipe!r}; int4 is for LLM recipes"
        )
    if args.publish is not None:
        validate_name(args.publish)
    run = load_run_config(args.config) if args.config is not None else RunConfig()
    overrides, plan = _overrides_and_plan(args, run)
    # Where to publish is settled before training: a missing target fails now, not after the training.
    registry = None if args.no_publish else common.reachable_registry()
    trained = train_recipe(args.recipe, overrides, search=plan)
    print(f"trained {trained.recipe}")
    if trained.search is not None:
        print(f"search: {trained.search.sampler}, best trial {trained.search.best_trial}")
        print(common.table(trial_table(trained.search.trials)))
    print(common.table(_result_rows(trained.draft)))

    quantized = None
    if args.quantize:
        quantized = _quantized(args, run, trained)
        print("int8 (dynamic quantization):")
        print(common.table(_result_rows(quantized.draft)))

    if args.out is not None:
        _write_run(args.out, trained, quantized)
        print(f"wrote {', '.join(sorted(trained.files))} and {DRAFT_FILE} to {args.out}")
    # Both gates before any write: a refused int8 publishes nothing, so a retry makes no duplicate fp32.
    ensure_publishable(trained.draft)
    name = args.publish or trained.recipe
    if quantized is not None:
        _ensure_int8_publishable(trained, quantized, name, publishing=registry is not None)
    if registry is None:
        return 0
    try:
        manifest = publish_trained(trained, registry, name)
    except MaasError as exc:
        kept = args.out or _write_run(_unpublished(name), trained, quantized)
        raise _kept_unpublished(exc, name, kept) from None
    print(f"published {manifest.name} version {manifest.version}")
    folder = registry.version_prefix(manifest.name, manifest.version)
    print(f"model card: s3://{registry.bucket}/{folder}card.md")
    if quantized is not None:
        int8 = _publish_int8(registry, manifest, with_base_version(quantized, manifest.version))
        print(f"published {int8.name} version {int8.version} (int8, from version {manifest.version})")
        # Both are new; which one `NAME` serves is the alias's business, as with any other version.
        print(
            f"note: {int8.name} without an alias resolves to the latest version, the int8 one; move an alias"
        )
        print(f"      to choose: maas models alias {int8.name} production {manifest.version}")
    return 0


def _ensure_int8_publishable(
    trained: TrainedModel, quantized: TrainedModel, name: str, *, publishing: bool
) -> None:
    """The int8 gates; a refusal says that nothing was published and keeps the fp32 model, which passed
    its own gates, so that it publishes alone without training again."""
    from maas.training import QuantizationRefused, ensure_publishable

    try:
        ensure_publishable(quantized.draft)
    except QuantizationRefused as exc:
        if not publishing:
            raise
        kept = _write_run(_unpublished(name), trained, None)
        raise QuantizationRefused(
            f"{exc.message}. Nothing was published, not even fp32 (so a retry makes no duplicate); the "
            f"fp32 model is kept in {kept}: publish it alone with "
            f"`maas publish {shlex.quote(str(kept))} --name {name}`"
        ) from None


def _write_run(folder: Path, trained: TrainedModel, quantized: TrainedModel | None) -> Path:
    from maas.training.saved_runs import INT8_FOLDER, write_run

    write_run(folder, trained.files, trained.draft)
    if quantized is not None:
        write_run(folder / INT8_FOLDER, quantized.files, quantized.draft)
    return folder


def _unpublished(name: str) -> Path:
    """A fresh folder under the local data folder (`.maas/unpublished/`), or the working directory's
    `.maas/` outside a checkout, for the files of a run whose publish failed."""
    import os
    from datetime import UTC, datetime

    from maas.errors import ConfigurationError
    from maas.local.data_folder import data_folder
    from maas.local.stack import find_project_root
    from maas.training.saved_runs import unpublished_folder

    try:
        root = find_project_root()
    except ConfigurationError:
        root = Path.cwd()
    return unpublished_folder(data_folder(os.environ, root), name, datetime.now(UTC))


def _publish_int8(registry: ModelRegistry, fp32: Manifest, int8: TrainedModel) -> Manifest:
    """The int8 version, or, when its publish fails, its files kept (the fp32 version is out already)."""
    from maas.training import publish_trained

    try:
        return publish_trained(int8, registry, fp32.name)
    except MaasError as exc:
        kept = _write_run(_unpublished(f"{fp32.name}-int8"), int8, None)
        raise _kept_unpublished(exc, fp32.name, kept, published=fp32) from None


def _kept_unpublished(
    exc: MaasError, name: str, folder: Path, published: Manifest | None = None
) -> MaasError:
    """The publish error, saying where the trained files are and the command that publishes them."""
    done = (
        f"{name} version {published.version} (fp32) was published, the int8 one was not; "
        if published
        else ""
    )
    return MaasError(
        f"{exc.message}; {done}the trained model is kept in {folder}: publish it with "
        f"`maas publish {shlex.quote(str(folder))} --name {name}`",
        status=exc.status,
    )


def _quantized(args: argparse.Namespace, run: RunConfig, trained: TrainedModel) -> TrainedModel:
    """The int8 version, with the gates' thresholds from the flags, else the --config file, else defaults."""
    from maas.training.int8_speed import DEFAULT_MIN_INT8_SPEEDUP
    from maas.training.pipeline import recipe
    from maas.training.quantize import quantize_trained

    max_degradation = args.max_degradation
    if max_degradation is None:
        max_degradation = run.max_degradation
    if max_degradation is None:
        max_degradation = recipe(args.recipe).int8_max_degradation
    min_speedup = args.min_int8_speedup if args.min_int8_speedup is not None else run.min_speedup
    return quantize_trained(
        trained,
        max_degradation=max_degradation,
        per_channel=run.per_channel if run.per_channel is not None else True,
        min_speedup=min_speedup if min_speedup is not None else DEFAULT_MIN_INT8_SPEEDUP,
    )


def export_command(args: argparse.Namespace) -> int:
    from maas.errors import InvalidInput
    from maas.registry import validate_name

    # Checked before torch is imported (seconds): a mistyped path is answered at once.
    if args.weights is not None and not args.weights.is_file():
        raise InvalidInput(f"--weights: expected a state_dict file at {args.weights}, found none")
    if args.publish is not None:
        validate_name(args.publish)
    registry = None if args.no_publish else common.reachable_registry()

    from maas.training import ensure_publishable, publish_trained
    from maas.training.byo.arguments import parse_tensor_spec
    from maas.training.byo.module_export import export_module

    trained = export_module(
        args.factory,
        args.weights,
        [parse_tensor_spec(text, argument="--input") for text in args.inputs],
        [parse_tensor_spec(text, argument="--output") for text in args.outputs or []] or None,
        seed=args.seed,
        parity_tolerance=args.parity_tolerance,
        description=args.description,
        external_data=args.external_data,
        # The console script does not put the working directory on sys.path; users expect it to.
        app_dir=Path.cwd(),
    )
    print(f"exported {args.factory}")
    print(common.table(_result_rows(trained.draft)))
    if args.out is not None:
        _write_run(args.out, trained, None)
    if registry is None:
        ensure_publishable(trained.draft)
        return 0
    manifest = publish_trained(trained, registry, args.publish)
    print(f"published {manifest.name} version {manifest.version}")
    return 0


def publish_command(args: argparse.Namespace) -> int:
    from maas.registry import validate_name
    from maas.training.byo.onnx_import import import_onnx, publish_imported
    from maas.training.saved_runs import is_saved_run

    validate_name(args.name)
    if is_saved_run(args.model):
        return _publish_saved_run(args.model, args.name)
    imported = import_onnx(args.model, description=args.description)
    rows = [("INPUT/OUTPUT", "DATATYPE", "SHAPE")]
    signature = imported.draft.signature
    rows += [(spec.name, spec.datatype, str(spec.shape)) for spec in [*signature.inputs, *signature.outputs]]
    print(common.table(rows))
    manifest = publish_imported(imported, common.registry(), args.name)
    print(f"published {manifest.name} version {manifest.version}")
    return 0


def _publish_saved_run(folder: Path, name: str) -> int:
    from maas.training.saved_runs import publish_run

    registry = common.registry()
    published = publish_run(folder, registry, name)
    manifest = published.manifest
    print(f"published {manifest.name} version {manifest.version}")
    folder_key = registry.version_prefix(manifest.name, manifest.version)
    print(f"model card: s3://{registry.bucket}/{folder_key}card.md")
    if published.int8 is not None:
        int8 = published.int8
        print(f"published {int8.name} version {int8.version} (int8, from version {manifest.version})")
    return 0


def synthesize_command(args: argparse.Namespace) -> int:
    import time

    from maas.training.matmul_chain import build_matmul_chain

    started = time.perf_counter()
    chain = build_matmul_chain(args.out, target_bytes=round(args.gb * 1e9), width=args.width, seed=args.seed)
    print(
        f"wrote {chain.model_path} and {chain.data_path.name}: {chain.layers} MatMuls of "
        f"{chain.width}x{chain.width} fp32, {chain.weight_bytes / 1e9:.2f} GB of weights, in "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(f"publish it: maas publish {chain.model_path} --name NAME")
    return 0


def _overrides_and_plan(args: argparse.Namespace, run: RunConfig) -> tuple[dict[str, Any], SearchPlan | None]:
    """Config overrides (the file's, then the flags') and the search plan, if any, for `maas train`."""
    from maas.errors import InvalidInput
    from maas.training.pipeline import recipe
    from maas.training.recipe import TrainingConfig, apply_overrides
    from maas.training.search import default_space, make_plan

    overrides: dict[str, Any] = dict(run.overrides)
    for flag in ("epochs", "seed", "checkpoint_dir"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    if args.external_data:
        overrides["external_data"] = True
    sampler = args.search or run.sampler
    if sampler is None:
        return overrides, None
    config = apply_overrides(recipe(args.recipe).default_config, overrides)
    if not isinstance(config, TrainingConfig):
        raise InvalidInput(f"--search: recipe {args.recipe!r} trains nothing, so it has no hyperparameters")
    # The default space is centred on the config being searched, so apply the overrides first.
    space = run.space or default_space(sampler, config)
    return overrides, make_plan(sampler, space, args.trials or run.trials)


def _result_rows(draft: ManifestDraft) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("METRIC", "VALUE")]
    rows += [(name, f"{value:.6g}") for name, value in draft.metrics.items()]
    if draft.parity is not None:
        rows += [
            ("parity max abs diff", f"{draft.parity.max_abs_diff:.3g}"),
            ("parity tolerance", f"{draft.parity.tolerance:.3g}"),
            ("parity samples", str(draft.parity.samples)),
            ("parity passed", "yes" if draft.parity.passed else "no"),
        ]
    quantization = draft.quantization
    if quantization is not None:
        rows += [
            (f"{quantization.metric} fp32", f"{quantization.fp32_value:.6g}"),
            (f"{quantization.metric} int8", f"{quantization.quantized_value:.6g}"),
            ("delta", f"{quantization.delta:+.3g}"),
            ("per-channel", "yes" if quantization.per_channel else "no"),
        ]
    return rows
