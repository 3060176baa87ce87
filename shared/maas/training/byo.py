"""Bring your own model: publish a PyTorch module trained elsewhere, or an ONNX file, with the same checks.

A module (`package.module:factory` plus a state_dict) goes through the pipeline's export: its outputs are
checked against the declared signature before anything is exported, and torch/onnxruntime parity is
measured on seeded inputs drawn from the declared input specs, so `publish_trained` refuses it exactly as
it refuses a recipe whose parity failed.

An ONNX file has no torch reference, so parity cannot be measured and `ensure_publishable` (whose promise
is "the graph was shown to match torch") would rightly refuse it. Instead of weakening that gate for one
`params["source"]` value, an imported graph is an `ImportedModel`, published only by `publish_imported`,
which re-runs the import checks on the exact bytes it publishes: onnx.checker, external data beside the
model and inside its folder, a session that opens, and one run on inputs built from the signature. The
manifest says so: `parity` is None and `params["source"]` is "byo-onnx".
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

from maas.datatypes import BY_V2, V2_NAMES, from_numpy
from maas.errors import InvalidInput, MaasError
from maas.registry import Lineage, Manifest, ManifestDraft, ModelRegistry, Signature
from maas.registry.manifest import MANIFEST_FILE, MODEL_FILE, SAFE_RELATIVE_PATH, sha256_hex
from maas.runtime.loaded_model import zeros_like_spec
from maas.signature import TensorSpec
from maas.training.card import CARD_FILE, render_report
from maas.training.errors import ModelCheckFailed
from maas.training.export import (
    GraphSpec,
    check_onnx,
    export_onnx,
    external_data_files,
    measure_parity,
    open_session,
    read_file_inside,
    signature_of,
)
from maas.training.lineage import build_lineage, code_version, package_versions
from maas.training.loop import load_checkpoint, load_state_dict_strictly
from maas.training.pipeline import TrainedModel
from maas.training.recipe import DEFAULT_PARITY_TOLERANCE, FitResult
from maas.training.report import ModelReport

__all__ = [
    "SOURCE_MODULE",
    "SOURCE_ONNX",
    "ImportedModel",
    "export_module",
    "import_onnx",
    "load_factory",
    "parse_tensor_spec",
    "publish_imported",
]

SOURCE_MODULE = "byo-module"
SOURCE_ONNX = "byo-onnx"
BATCH_AXIS = "batch"
# torch.export specialises sizes 0 and 1, so a dynamic axis must be traced at 2 or more to stay dynamic.
EXPORT_BATCH = 2
FIRST_EXPORT_DIM = 3
# Parity runs other dynamic axes at a different size than export did, so a specialised axis shows up.
PARITY_DIM_OFFSET = 2
DEFAULT_SAMPLES = 64
# Integer inputs are usually indices (token ids, categories): small and non-negative fits most tables.
INT_SAMPLE_HIGH = 8
# Written beside the graph by the registry or the report, so a graph may not claim them for its data.
RESERVED_FILES = frozenset({MODEL_FILE, MANIFEST_FILE, CARD_FILE})
ONNX_PACKAGES = ("onnx", "onnxruntime")

_SPEC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_TARGET = re.compile(rf"(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})")
_SAFE_PATH = re.compile(SAFE_RELATIVE_PATH)
_SPEC_FORMAT = "NAME:DATATYPE:[d0,d1,...] with -1 for a dynamic dimension, e.g. input:FP32:[-1,10]"


@dataclass(frozen=True, eq=False)
class ImportedModel:
    """An ONNX graph made outside maas, checked, with its card and the draft that describes it.

    Publish it with `publish_imported`: it has no parity, so `publish_trained` would refuse it."""

    source: Path
    files: dict[str, bytes]
    draft: ManifestDraft

    @property
    def signature(self) -> Signature:
        return self.draft.signature


# ---- arguments ----------------------------------------------------------------------------------


def parse_tensor_spec(text: str, *, argument: str = "--input") -> TensorSpec:
    """`NAME:DATATYPE:[d0,d1,...]`, e.g. `input:FP32:[-1,10]`; the datatype is any V2 name, any case."""
    name, _, rest = text.partition(":")
    datatype, colon, shape_text = rest.partition(":")
    if not colon:
        raise InvalidInput(f"{argument}: expected {_SPEC_FORMAT}, got {_quoted(text)}")
    if not _SPEC_NAME.fullmatch(name):
        raise InvalidInput(
            f"{argument}: name: expected 1-64 letters, digits or '_' not starting with a digit "
            f"(it names a graph tensor and its axes), got {_quoted(name)}"
        )
    if datatype.upper() not in V2_NAMES:
        raise InvalidInput(
            f"{argument}: datatype of '{name}': expected one of {list(V2_NAMES)}, got {_quoted(datatype)}"
        )
    return TensorSpec(name=name, datatype=datatype.upper(), shape=_parse_shape(shape_text, name, argument))


def load_factory(
    target: str, *, argument: str = "--module", app_dir: Path | None = None
) -> Callable[[], torch.nn.Module]:
    """The no-argument callable (class or function) `package.module:factory` names, checked on each call
    to return a torch.nn.Module.

    `app_dir` goes first on sys.path (like uvicorn's --app-dir): a `maas` console script does not put
    the working directory there, so a module beside the user's weights would otherwise not import."""
    match = _TARGET.fullmatch(target)
    if match is None:
        raise InvalidInput(
            f"{argument}: expected package.module:factory (a class or function that takes no arguments), "
            f"got {_quoted(target)}"
        )
    module_name, attribute = match["module"], match["attr"]
    if app_dir is not None and str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise InvalidInput(
                f"{argument}: expected an importable module '{module_name}', found none on sys.path"
            ) from None
        raise InvalidInput(f"{argument}: importing '{module_name}' failed: {_first_line(exc)}") from exc
    except Exception as exc:
        # The user's own code runs at import: any error is theirs, and the chained traceback helps them.
        raise InvalidInput(f"{argument}: importing '{module_name}' failed: {_first_line(exc)}") from exc
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InvalidInput(
                f"{argument}: expected '{module_name}' to define '{attribute}', got no attribute '{part}'"
            )
        found = getattr(found, part)
    if not callable(found):
        raise InvalidInput(
            f"{argument}: expected '{target}' to be a class or function, got {type(found).__name__}"
        )
    required = _required_parameters(found)
    if required:
        raise InvalidInput(
            f"{argument}: expected '{target}' to be callable with no arguments, "
            f"got one that requires {required}"
        )
    factory: Callable[[], object] = found

    def build() -> torch.nn.Module:
        try:
            built = factory()
        except Exception as exc:
            raise InvalidInput(f"{argument}: calling '{target}()' failed: {_first_line(exc)}") from exc
        if not isinstance(built, torch.nn.Module):
            raise InvalidInput(
                f"{argument}: expected '{target}()' to return a torch.nn.Module, got {type(built).__name__}"
            )
        return built

    return build


# ---- a module and its weights -------------------------------------------------------------------


def export_module(
    module_target: str,
    weights: Path | None,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec] | None = None,
    *,
    seed: int = 0,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    samples: int = DEFAULT_SAMPLES,
    description: str = "",
    external_data: bool = False,
    app_dir: Path | None = None,
) -> TrainedModel:
    """Build the module, load its weights, check it against the declared signature, export and check it.

    Like `train_recipe`, a failed parity is recorded rather than raised: `publish_trained` refuses it.
    Publish with an explicit name; `recipe` is `byo:<target>`, which is not a valid model name.
    `weights=None` keeps the factory's own (seeded) initialisation."""
    _check_arguments(inputs, outputs, seed=seed, parity_tolerance=parity_tolerance, samples=samples)
    factory = load_factory(module_target, app_dir=app_dir)
    # The factory's random init is seeded without disturbing the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory()
    weights_sha256 = _load_weights(module, weights, module_target) if weights is not None else None
    module.cpu().eval()

    dynamic_axes = _dynamic_axes(inputs)
    export_sizes = _dynamic_sizes(dynamic_axes, EXPORT_BATCH, 0)
    parity_sizes = _dynamic_sizes(dynamic_axes, samples, PARITY_DIM_OFFSET)
    rng = np.random.default_rng(seed)
    example = _sample_inputs(inputs, dynamic_axes, export_sizes, rng)
    parity_inputs = _sample_inputs(inputs, dynamic_axes, parity_sizes, rng)

    produced = _eager_outputs(module, [spec.name for spec in inputs], example, module_target)
    if outputs is not None:
        _check_outputs(outputs, produced)
    output_names = (
        tuple(spec.name for spec in outputs) if outputs is not None else _default_output_names(len(produced))
    )
    graph = GraphSpec(
        inputs=tuple(spec.name for spec in inputs), outputs=output_names, dynamic_axes=dynamic_axes
    )

    with _user_code(f"ONNX export of '{module_target}'"):
        files = export_onnx(module, example, graph, external_data=external_data)
    check_onnx(files)
    session = open_session(files)
    signature = signature_of(session)
    _check_graph(signature, inputs, outputs)
    with _user_code(f"parity of '{module_target}' on {samples} seeded samples"):
        parity = measure_parity(module, session, parity_inputs, tolerance=parity_tolerance, spec=graph)

    params: dict[str, Any] = {
        "source": SOURCE_MODULE,
        "factory": module_target,
        "weights_sha256": weights_sha256,
    }
    lineage = build_lineage(f"byo:{module_target}", weights_sha256 or "", seed)
    if weights_sha256 is None:
        lineage = lineage.model_copy(update={"dataset_hash": None})
    description = description or f"A PyTorch module ({module_target}) trained outside maas, exported to ONNX."
    draft = ManifestDraft(
        task=None,
        description=description,
        model_data_files=external_data_files(files),
        signature=signature,
        params=params,
        lineage=lineage,
        parity=parity,
    )
    data_description = "Trained outside maas, on data maas has not seen. " + (
        f"The weights are a state_dict file with sha256 `{weights_sha256}`."
        if weights_sha256
        else "No weights were given: the module keeps the factory's seeded initialisation."
    )
    limitations = (
        "maas neither trained nor evaluated this model, so the card has no test metrics. Parity was "
        f"measured on {samples} seeded random inputs drawn from the declared input specs (floats from "
        f"N(0, 1), integers in [0, {INT_SAMPLE_HIGH})), not on real data."
    )
    fitted = FitResult(
        module=module,
        graph=graph,
        test_inputs=parity_inputs,
        test_targets=None,
        params=params,
        dataset_hash=weights_sha256 or "",
        description=description,
        data_description=data_description,
        limitations=limitations,
    )
    files.update(render_report(_report(module_target, draft, data_description, limitations)))
    return TrainedModel(
        recipe=f"byo:{module_target}", module=module, graph=graph, files=files, draft=draft, fit=fitted
    )


# ---- an ONNX file -------------------------------------------------------------------------------


def import_onnx(path: Path, *, description: str = "", argument: str = "model") -> ImportedModel:
    """Read an ONNX file and the external-data files its graph references beside it, and check them.

    The external data to read comes from the graph itself, so nobody has to list it; each location must
    be a plain relative file inside the model's folder (no absolute path, no "..", no symlink)."""
    model_bytes = _read_model_file(path, argument)
    proto = _parse_onnx(model_bytes, path)
    locations = _external_locations(proto)
    files = {MODEL_FILE: model_bytes}
    for location in locations:
        files[location] = _read_beside(path, location)
    signature = _verified_signature(files, str(path))
    sha = sha256_hex(model_bytes)
    params: dict[str, Any] = {"source": SOURCE_ONNX, "sha256": sha}
    producer = f"{proto.producer_name} {proto.producer_version}".strip()
    if producer:
        params["producer"] = producer
    lineage = Lineage(
        recipe=SOURCE_ONNX, code_version=code_version(), packages=package_versions(ONNX_PACKAGES)
    )
    draft = ManifestDraft(
        task=None,
        description=description or f"An ONNX graph ({path.name}) made outside maas.",
        model_data_files=locations,
        signature=signature,
        params=params,
        lineage=lineage,
        parity=None,
    )
    data_description = f"Not known to maas: the graph was imported as a file with sha256 `{sha}`."
    limitations = (
        "Imported as ONNX, without a PyTorch reference: torch/onnxruntime parity was not measured. maas "
        "checked the graph with onnx.checker and ran it once on zero inputs built from its signature; it "
        "did not evaluate its predictions."
    )
    files.update(render_report(_report(path.name, draft, data_description, limitations)))
    return ImportedModel(source=path, files=files, draft=draft)


def publish_imported(imported: ImportedModel, registry: ModelRegistry, name: str) -> Manifest:
    """Publish an imported graph after re-running its checks on the exact bytes being published.

    This is the imported graph's gate in place of `ensure_publishable`: it cannot have parity, so what it
    must show is that it is valid ONNX, that its data is what it references, and that it runs."""
    draft = imported.draft
    if draft.params.get("source") != SOURCE_ONNX or draft.parity is not None:
        raise ModelCheckFailed(
            f"publish: expected an imported ONNX draft (source '{SOURCE_ONNX}', no parity), "
            f"got source {draft.params.get('source')!r}; publish a torch export with publish_trained"
        )
    label = str(imported.source)
    digest = sha256_hex(imported.files[draft.model_file])
    if digest != draft.params.get("sha256"):
        raise ModelCheckFailed(
            f"{label}: expected the graph imported with sha256 {draft.params.get('sha256')}, got {digest}"
        )
    locations = external_data_files(imported.files)
    if locations != draft.model_data_files:
        raise ModelCheckFailed(
            f"{label}: external data: expected {draft.model_data_files} as checked at import, got {locations}"
        )
    signature = _verified_signature(imported.files, label)
    if signature != draft.signature:
        raise ModelCheckFailed(
            f"{label}: signature: expected {draft.signature.model_dump()} as checked at import, "
            f"got {signature.model_dump()}"
        )
    return registry.publish(name, imported.files, draft)


# ---- module checks ------------------------------------------------------------------------------


def _check_arguments(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec] | None,
    *,
    seed: int,
    parity_tolerance: float,
    samples: int,
) -> None:
    if not inputs:
        raise InvalidInput("--input: expected at least one input spec, got none")
    if outputs is not None and not outputs:
        raise InvalidInput("--output: expected at least one output spec when any is given, got none")
    names = [spec.name for spec in (*inputs, *(outputs or ()))]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"--input/--output: expected unique tensor names, got {duplicates} more than once")
    for spec in inputs:
        if spec.datatype == "BYTES":
            raise InvalidInput(
                f"--input '{spec.name}': expected a numeric or BOOL datatype (a module takes tensors), "
                "got BYTES"
            )
        if not spec.shape:
            raise InvalidInput(
                f"--input '{spec.name}': expected rank >= 1 (axis 0 is the batch), got shape []"
            )
    if seed < 0:
        raise InvalidInput(f"seed: expected an integer >= 0, got {seed}")
    if not parity_tolerance > 0:
        raise InvalidInput(f"parity_tolerance: expected a number > 0, got {parity_tolerance}")
    if samples < 1:
        raise InvalidInput(f"samples: expected an integer >= 1, got {samples}")


def _load_weights(module: torch.nn.Module, path: Path, target: str) -> str:
    """Load a weights_only state_dict strictly, naming every key or shape that does not fit; its sha256."""
    if not path.is_file():
        raise InvalidInput(f"--weights: expected a state_dict file at {path}, found none")
    state = load_checkpoint(path)
    load_state_dict_strictly(module, state, f"{path} for '{target}'")
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _dynamic_axes(inputs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    """Every -1 dimension is dynamic: axis 0 is the shared batch, any other is the input's own."""
    return {
        spec.name: {
            axis: BATCH_AXIS if axis == 0 else f"{spec.name}_dim{axis}"
            for axis, dim in enumerate(spec.shape)
            if dim < 0
        }
        for spec in inputs
    }


def _dynamic_sizes(axes: Mapping[str, Mapping[int, str]], batch: int, offset: int) -> dict[str, int]:
    # Distinct sizes for distinct axes, so the tracer never takes two independent axes for one.
    names = list(dict.fromkeys(name for per_input in axes.values() for name in per_input.values()))
    others = [name for name in names if name != BATCH_AXIS]
    sizes = {name: FIRST_EXPORT_DIM + offset + i for i, name in enumerate(others)}
    return {BATCH_AXIS: batch, **sizes}


def _sample_inputs(
    inputs: Sequence[TensorSpec],
    axes: Mapping[str, Mapping[int, str]],
    sizes: Mapping[str, int],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    sampled: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = tuple(sizes[axes[spec.name][axis]] if dim < 0 else dim for axis, dim in enumerate(spec.shape))
        dtype = BY_V2[spec.datatype].numpy
        if dtype.kind == "f":
            sampled[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            sampled[spec.name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            sampled[spec.name] = rng.integers(0, INT_SAMPLE_HIGH, shape).astype(dtype)
    return sampled


def _eager_outputs(
    module: torch.nn.Module, names: Sequence[str], example: Mapping[str, np.ndarray], target: str
) -> list[torch.Tensor]:
    shapes = ", ".join(
        f"{name} {_describe(_v2(example[name].dtype), list(example[name].shape))}" for name in names
    )
    with _user_code(f"'{target}' forward on example inputs ({shapes})"), torch.inference_mode():
        result = module(*(torch.from_numpy(example[name]) for name in names))
    produced = list(result) if isinstance(result, tuple | list) else [result]
    if not produced or not all(isinstance(item, torch.Tensor) for item in produced):
        got = type(result).__name__
        if isinstance(result, tuple | list):
            got = f"a {got} of {[type(item).__name__ for item in produced]}"
        raise ModelCheckFailed(
            f"outputs of '{target}': expected a tensor or a tuple/list of tensors from forward, got {got}"
        )
    return produced


def _check_outputs(declared: Sequence[TensorSpec], produced: Sequence[torch.Tensor]) -> None:
    """Count, datatype, rank and fixed dimensions, before export: the cheapest place to say what is wrong."""
    if len(produced) != len(declared):
        raise ModelCheckFailed(
            f"outputs: expected {len(declared)} ({[spec.name for spec in declared]}) from the module, "
            f"got {len(produced)}"
        )
    problems = []
    for spec, tensor in zip(declared, produced, strict=True):
        datatype, shape = _torch_v2(tensor.dtype), list(tensor.shape)
        if not _fits(spec, datatype, shape):
            problems.append(
                f"output '{spec.name}': expected {_describe(spec.datatype, spec.shape)}, "
                f"got {_describe(datatype, shape)}"
            )
    if problems:
        raise ModelCheckFailed(f"{'; '.join(problems)} (on an example batch of {EXPORT_BATCH})")


def _check_graph(
    graph: Signature, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec] | None
) -> None:
    """The exported graph must keep the declared contract: a dynamic input axis stays dynamic, and a
    declared fixed size is never contradicted."""
    for kind, declared, exported in (("input", inputs, graph.inputs), ("output", outputs, graph.outputs)):
        if declared is None:
            continue
        if [spec.name for spec in declared] != [spec.name for spec in exported]:
            raise ModelCheckFailed(
                f"exported graph {kind}s: expected {[spec.name for spec in declared]}, "
                f"got {[spec.name for spec in exported]}"
            )
        for want, got in zip(declared, exported, strict=True):
            # An input's declared size is exactly what the graph takes; an output's may be left symbolic
            # by the exporter's shape inference, or be declared -1 for any size.
            dims_agree = all(
                w == g if kind == "input" else (w < 0 or g < 0 or w == g)
                for w, g in zip(want.shape, got.shape, strict=False)
            )
            if want.datatype != got.datatype or len(want.shape) != len(got.shape) or not dims_agree:
                raise ModelCheckFailed(
                    f"exported graph {kind} '{want.name}': expected {_describe(want.datatype, want.shape)}, "
                    f"got {_describe(got.datatype, got.shape)}"
                )


def _fits(spec: TensorSpec, datatype: str, shape: Sequence[int]) -> bool:
    return (
        datatype == spec.datatype
        and len(shape) == len(spec.shape)
        and all(want < 0 or want == got for want, got in zip(spec.shape, shape, strict=True))
    )


def _default_output_names(count: int) -> tuple[str, ...]:
    return ("output",) if count == 1 else tuple(f"output_{i}" for i in range(count))


def _report(name: str, draft: ManifestDraft, data_description: str, limitations: str) -> ModelReport:
    return ModelReport(
        name=name,
        task="custom",
        description=draft.description,
        intended_use="",
        data_description=data_description,
        signature=draft.signature,
        preprocessing=None,
        metrics={},
        evaluation={},
        params=draft.params,
        primary_metric=None,
        primary_metric_goal="minimize",
        history=None,
        search=None,
        quantization=None,
        parity=draft.parity,
        lineage=draft.lineage,
        limitations=limitations,
    )


# ---- ONNX file checks ---------------------------------------------------------------------------


def _read_model_file(path: Path, argument: str) -> bytes:
    if not path.is_file():
        raise InvalidInput(f"{argument}: expected an ONNX file at {path}, found none")
    return path.read_bytes()


def _parse_onnx(data: bytes, path: Path) -> onnx.ModelProto:
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:
        # Arbitrary bytes fail inside protobuf in more ways than one exception type names.
        raise ModelCheckFailed(
            f"{path}: expected an ONNX model (a serialized ModelProto), got bytes that do not parse "
            f"({type(exc).__name__})"
        ) from None
    # Protobuf parses many byte strings into an empty or partial message; a model has both of these.
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.node:
        raise ModelCheckFailed(
            f"{path}: expected an ONNX model with an ir_version and a graph of nodes, got {len(data)} bytes "
            "that are not one"
        )
    return proto


def _external_locations(proto: onnx.ModelProto) -> list[str]:
    return sorted(
        {
            ExternalDataInfo(tensor).location
            for tensor in _get_all_tensors(proto)
            if uses_external_data(tensor)
        }
    )


def _read_beside(model_path: Path, location: str) -> bytes:
    """One external-data file, refused unless it is a plain file inside the model's folder."""

    def refuse(why: str) -> ModelCheckFailed:
        return ModelCheckFailed(
            f"{model_path}: external data location {location!r}: expected a relative file beside the model, "
            f"got {why}"
        )

    if not location:
        raise refuse("an empty location")
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or location[0] in "/\\"
    ):
        raise refuse("an absolute path")
    if ".." in re.split(r"[/\\]", location):
        raise refuse("a path with '..'")
    if not _SAFE_PATH.fullmatch(location):
        raise refuse("a name the registry cannot store (letters, digits, '_', '-' and '.' per segment)")
    if location in RESERVED_FILES:
        raise refuse(f"a name reserved for the version's own files {sorted(RESERVED_FILES)}")
    return read_file_inside(model_path.parent, location, refuse)


def _verified_signature(files: Mapping[str, bytes], label: str) -> Signature:
    """onnx.checker, a session that opens and one run on inputs built from the graph's signature."""
    with _labelled(label):
        external_data_files(files)
        check_onnx(files)
    with _user_code(f"{label}: opening an onnxruntime session"):
        session = open_session(files)
    with _labelled(label):
        signature = signature_of(session)
    _run_once(session, signature, label)
    return signature


def _run_once(session: ort.InferenceSession, signature: Signature, label: str) -> None:
    feeds = {spec.name: zeros_like_spec(spec) for spec in signature.inputs}
    shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())
    with _user_code(f"{label}: running the graph once on zero inputs ({shapes})"):
        results = session.run(None, feeds)
    if len(results) != len(signature.outputs):
        raise ModelCheckFailed(
            f"{label}: expected {len(signature.outputs)} outputs from one run, got {len(results)}"
        )


# ---- helpers ------------------------------------------------------------------------------------


def _parse_shape(text: str, name: str, argument: str) -> list[int]:
    expected = "a list of sizes >= 1 or -1 (dynamic), e.g. [-1,10]"
    stripped = text.strip()
    try:
        shape = json.loads(stripped) if stripped.startswith("[") else None
    except ValueError:
        shape = None
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and (dim == -1 or dim >= 1) for dim in shape
    ):
        raise InvalidInput(f"{argument}: shape of '{name}': expected {expected}, got {_quoted(text)}")
    return shape


def _required_parameters(factory: Callable[..., object]) -> list[str]:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []  # no introspectable signature (some builtins): calling it will tell
    return [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _torch_v2(dtype: torch.dtype) -> str:
    try:
        numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        return str(dtype).removeprefix("torch.")  # bfloat16 and friends have no numpy or V2 name
    return _v2(numpy_dtype)


def _v2(dtype: np.dtype[Any]) -> str:
    found = from_numpy(dtype)
    return found.v2 if found is not None else str(dtype)


def _describe(datatype: str, shape: Sequence[int]) -> str:
    return f"{datatype} [{','.join(str(dim) for dim in shape)}]"


def _listed(items: Sequence[str], limit: int = 10) -> str:
    shown = list(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else str(shown)


def _quoted(text: str, limit: int = 100) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


@contextmanager
def _user_code(what: str) -> Iterator[None]:
    """Code we do not own (the user's forward, the exporter on it, onnxruntime on a foreign graph) fails
    in ways no exception type list covers; any failure there is the model's, reported with what ran."""
    try:
        yield
    except MaasError:
        raise
    except Exception as exc:
        raise ModelCheckFailed(f"{what}: failed with {_first_line(exc)}") from exc


@contextmanager
def _labelled(label: str) -> Iterator[None]:
    """Name the user's file in a check that only knows it as model.onnx."""
    try:
        yield
    except ModelCheckFailed as exc:
        raise ModelCheckFailed(f"{label}: {exc.message}") from None
