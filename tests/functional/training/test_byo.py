"""Bring your own model: a module trained elsewhere, or an ONNX file, gets the same checks as a recipe."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import convert_model_to_external_data

from maas.errors import InvalidInput
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import ModelRegistry, parse_ref
from maas.registry.artifact_uploads import MAX_GRAPH_FILE_BYTES
from maas.registry.manifest import MODEL_FILE
from maas.service.inference import InferenceService
from maas.signature import TensorSpec
from maas.training import ModelCheckFailed, ParityCheckFailed, publish_trained
from maas.training.byo.arguments import load_factory, parse_tensor_spec
from maas.training.byo.module_export import SOURCE_MODULE, export_module
from maas.training.byo.onnx_import import SOURCE_ONNX, import_onnx, publish_imported
from maas.training.card import CARD_FILE
from maas.training.export import GraphSpec, export_onnx
from tests.functional.training.byo_fixtures import FEATURES, TARGETS, VOCAB, FeaturesAndIds, Regressor

FIXTURES = "tests.functional.training.byo_fixtures"
REGRESSOR = f"{FIXTURES}:make_regressor"
X = TensorSpec(name="input", datatype="FP32", shape=[-1, FEATURES])
Y = TensorSpec(name="output", datatype="FP32", shape=[-1, TARGETS])
DATA_FILE = "weights.bin"


def trained_elsewhere(seed: int = 7) -> Regressor:
    # A seed other than export_module's, so the result only matches if the weights were really loaded.
    torch.manual_seed(seed)
    return Regressor().eval()


def saved_state(module: torch.nn.Module, path: Path) -> Path:
    torch.save(module.state_dict(), path)
    return path


def eager(module: torch.nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        result: np.ndarray = module(*(torch.from_numpy(array) for array in inputs)).numpy()
    return result


def served(service: InferenceService, name: str, *inputs: tuple[str, str, np.ndarray]) -> np.ndarray:
    request = InferenceRequest(inputs=[Tensor(n, datatype, array) for n, datatype, array in inputs])
    return service.infer(parse_ref(name), request).outputs[0].array


def keys_in(s3: Any, registry: ModelRegistry) -> int:
    count: int = s3.list_objects_v2(Bucket=registry.bucket)["KeyCount"]
    return count


# ---- parse_tensor_spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input:FP32:[-1,10]", TensorSpec(name="input", datatype="FP32", shape=[-1, 10])),
        ("ids:int64:[-1, 3]", TensorSpec(name="ids", datatype="INT64", shape=[-1, 3])),
        ("mask:BOOL:[2,-1,-1]", TensorSpec(name="mask", datatype="BOOL", shape=[2, -1, -1])),
        ("score:FP64:[]", TensorSpec(name="score", datatype="FP64", shape=[])),
    ],
)
def test_a_tensor_spec_is_name_datatype_and_shape(text: str, expected: TensorSpec) -> None:
    assert parse_tensor_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("input", "NAME:DATATYPE:[d0,d1,...]"),
        ("input:FP32", "NAME:DATATYPE:[d0,d1,...]"),
        ("in-put:FP32:[-1,10]", "name: expected"),
        ("1x:FP32:[-1,10]", "name: expected"),
        ("input:FLOAT:[-1,10]", "got 'FLOAT'"),
        ("input:FP32:-1,10", "got '-1,10'"),
        ("input:FP32:[-1,ten]", "got '[-1,ten]'"),
        ("input:FP32:[-2,10]", "sizes >= 1 or -1"),
        ("input:FP32:[0,10]", "sizes >= 1 or -1"),
        ("input:FP32:[1.5]", "got '[1.5]'"),
        ("input:FP32:[true]", "got '[true]'"),
        ("input:FP32:{}", "got '{}'"),
    ],
)
def test_a_malformed_tensor_spec_is_refused_naming_the_argument(text: str, mentions: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_tensor_spec(text, argument="--output")

    assert raised.value.status == 400
    assert raised.value.message.startswith("--output: ")
    assert "expected" in raised.value.message
    assert mentions in raised.value.message


# ---- load_factory --------------------------------------------------------------------------------


def test_a_factory_target_builds_a_fresh_module_on_each_call() -> None:
    build = load_factory(REGRESSOR)

    first, second = build(), build()

    assert isinstance(first, Regressor)
    assert first is not second
    assert isinstance(load_factory(f"{FIXTURES}:Regressor")(), Regressor)


@pytest.mark.parametrize(
    ("target", "mentions"),
    [
        ("tests.functional.training.byo_fixtures", "expected package.module:factory"),
        ("tests.functional.training.byo_fixtures:make regressor", "expected package.module:factory"),
        (
            "tests.functional.training.no_such_module:make",
            "expected an importable module 'tests.functional.training.no_such_module'",
        ),
        (f"{FIXTURES}:make_classifier", "got no attribute 'make_classifier'"),
        (f"{FIXTURES}:FEATURES", "to be a class or function, got int"),
        (f"{FIXTURES}:needs_a_width", "requires ['width']"),
    ],
)
def test_a_bad_factory_target_is_refused(target: str, mentions: str) -> None:
    with pytest.raises(InvalidInput, match=r"^--module: ") as raised:
        load_factory(target)

    assert mentions in raised.value.message


def test_a_factory_beside_the_users_files_imports_from_app_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "byo_app_dir_models.py").write_text(
        "import torch\n\ndef make():\n    return torch.nn.Linear(4, 2)\n"
    )

    build = load_factory("byo_app_dir_models:make", app_dir=tmp_path)

    assert isinstance(build(), torch.nn.Linear)


def test_a_factory_that_returns_no_module_is_refused_when_called() -> None:
    build = load_factory(f"{FIXTURES}:not_a_module")

    with pytest.raises(InvalidInput, match=r"to return a torch.nn.Module, got int"):
        build()


# ---- export_module: what works -------------------------------------------------------------------


def test_a_module_trained_elsewhere_publishes_and_serves_the_same_numbers(
    tmp_path: Path, registry: ModelRegistry, service: InferenceService
) -> None:
    original = trained_elsewhere()
    weights = saved_state(original, tmp_path / "regressor.pt")

    trained = export_module(REGRESSOR, weights, [X], [Y], samples=32)
    manifest = publish_trained(trained, registry, "byo-regressor")

    assert trained.draft.parity is not None and trained.draft.parity.passed
    assert trained.draft.parity.samples == 32
    assert manifest.signature.inputs == [X]
    assert manifest.signature.outputs == [Y]
    assert manifest.task is None
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest.params == {"source": SOURCE_MODULE, "factory": REGRESSOR, "weights_sha256": digest}
    assert (manifest.lineage.recipe, manifest.lineage.dataset_hash) == (f"byo:{REGRESSOR}", digest)
    assert manifest.lineage.seed == 0
    assert [a.path for a in manifest.artifacts] == [MODEL_FILE, CARD_FILE]
    card = registry.read_artifact(manifest, manifest.artifact(CARD_FILE)).decode()
    assert "## Parity" in card
    assert digest in card
    x = np.random.default_rng(1).standard_normal((5, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(
        served(service, "byo-regressor", ("input", "FP32", x)), eager(original, x), atol=1e-5
    )


def test_without_output_specs_the_outputs_are_named_and_read_from_the_graph(tmp_path: Path) -> None:
    weights = saved_state(trained_elsewhere(), tmp_path / "regressor.pt")

    trained = export_module(REGRESSOR, weights, [X], None, samples=8)

    assert trained.draft.signature.outputs == [Y]
    assert trained.graph.outputs == ("output",)
    assert trained.draft.parity is not None and trained.draft.parity.passed


def test_a_module_with_float_and_integer_inputs_exports_and_serves(
    tmp_path: Path, registry: ModelRegistry, service: InferenceService
) -> None:
    torch.manual_seed(3)
    original = FeaturesAndIds().eval()
    weights = saved_state(original, tmp_path / "two_inputs.pt")
    inputs = [parse_tensor_spec("features:FP32:[-1,4]"), parse_tensor_spec("ids:INT64:[-1,3]")]

    trained = export_module(
        f"{FIXTURES}:FeaturesAndIds", weights, inputs, [parse_tensor_spec("scores:FP32:[-1,3]")], samples=16
    )
    publish_trained(trained, registry, "two-inputs")

    assert trained.draft.parity is not None and trained.draft.parity.passed
    assert trained.draft.signature.inputs == inputs
    assert trained.test_inputs["ids"].dtype == np.int64
    assert trained.test_inputs["ids"].min() >= 0 and trained.test_inputs["ids"].max() < VOCAB
    features = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    ids = np.array([[0, 1, 2], [7, 7, 7], [3, 0, 5]], dtype=np.int64)
    np.testing.assert_allclose(
        served(service, "two-inputs", ("features", "FP32", features), ("ids", "INT64", ids)),
        eager(original, features, ids),
        atol=1e-5,
    )


# ---- export_module: what is refused --------------------------------------------------------------


def test_a_corrupted_checkpoint_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "corrupt.pt"
    weights.write_bytes(os.urandom(512))

    with pytest.raises(ModelCheckFailed, match=r"expected a torch\.save file, got unreadable") as raised:
        export_module(REGRESSOR, weights, [X], [Y])

    assert str(weights) in raised.value.message


def test_missing_weights_are_the_callers_mistake(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^--weights: expected a state_dict file at .*absent\.pt"):
        export_module(REGRESSOR, tmp_path / "absent.pt", [X], [Y])


def test_a_pickled_module_is_refused_as_not_weights_only(tmp_path: Path) -> None:
    weights = tmp_path / "pickled.pt"
    torch.save(trained_elsewhere(), weights)

    with pytest.raises(ModelCheckFailed) as raised:
        export_module(REGRESSOR, weights, [X], [Y])

    assert "weights_only=True" in raised.value.message
    assert "save module.state_dict(), not the module" in raised.value.message


def test_a_state_dict_with_other_keys_is_refused_listing_them(tmp_path: Path) -> None:
    weights = saved_state(torch.nn.Linear(FEATURES, TARGETS), tmp_path / "linear.pt")

    with pytest.raises(ModelCheckFailed) as raised:
        export_module(REGRESSOR, weights, [X], [Y])

    message = raised.value.message
    assert "missing ['hidden.weight', 'hidden.bias', 'head.weight', 'head.bias']" in message
    assert "unexpected ['weight', 'bias']" in message


def test_a_state_dict_with_other_shapes_is_refused_naming_them(tmp_path: Path) -> None:
    state = trained_elsewhere().state_dict()
    state["head.weight"] = torch.zeros(TARGETS + 1, 8)
    weights = tmp_path / "wider.pt"
    torch.save(state, weights)

    with pytest.raises(ModelCheckFailed, match=r"head.weight: expected \[2, 8\], got \[3, 8\]"):
        export_module(REGRESSOR, weights, [X], [Y])


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (["output:FP32:[-1,3]"], "output 'output': expected FP32 [-1,3], got FP32 [2,2]"),
        (["output:INT64:[-1,2]"], "output 'output': expected INT64 [-1,2], got FP32 [2,2]"),
        (["output:FP32:[-1]"], "output 'output': expected FP32 [-1], got FP32 [2,2]"),
        (["a:FP32:[-1,2]", "b:FP32:[-1,2]"], "outputs: expected 2 (['a', 'b']) from the module, got 1"),
    ],
)
def test_outputs_that_do_not_match_the_declared_signature_are_refused_before_export(
    tmp_path: Path, declared: list[str], message: str
) -> None:
    weights = saved_state(trained_elsewhere(), tmp_path / "regressor.pt")
    outputs = [parse_tensor_spec(text, argument="--output") for text in declared]

    with pytest.raises(ModelCheckFailed) as raised:
        export_module(REGRESSOR, weights, [X], outputs)

    assert message in raised.value.message


def test_inputs_the_module_cannot_take_are_refused_with_its_own_error() -> None:
    with pytest.raises(ModelCheckFailed) as raised:
        export_module(REGRESSOR, None, [parse_tensor_spec("input:FP32:[-1,5]")], [Y])

    assert "forward on example inputs (input FP32 [2,5])" in raised.value.message
    assert "RuntimeError" in raised.value.message


def test_a_module_that_exports_differently_than_it_runs_is_refused_at_publish(
    registry: ModelRegistry, s3: Any
) -> None:
    trained = export_module(f"{FIXTURES}:make_exports_differently", None, [X], [Y], samples=16)

    assert trained.draft.parity is not None and not trained.draft.parity.passed
    with pytest.raises(ParityCheckFailed) as raised:
        publish_trained(trained, registry, "exports-differently")

    assert "over 16 samples" in raised.value.message
    assert keys_in(s3, registry) == 0


# ---- import_onnx ---------------------------------------------------------------------------------


def exported_model(module: torch.nn.Module) -> bytes:
    example = {"input": np.zeros((2, FEATURES), dtype=np.float32)}
    return export_onnx(module, example, GraphSpec())[MODEL_FILE]


@pytest.fixture(scope="module")
def regressor_onnx() -> bytes:
    """The graph of `trained_elsewhere()`, exported once for every import test."""
    return exported_model(trained_elsewhere())


def save_with_external_data(model: bytes, path: Path, location: str = DATA_FILE) -> Path:
    """Every initializer in `location` beside the model: the exporter keeps tiny tensors inline."""
    proto = onnx.load_model_from_string(model)
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location=location, size_threshold=0)
    onnx.save_model(proto, str(path))
    return path


def test_an_onnx_file_publishes_with_the_signature_read_from_its_graph(
    tmp_path: Path, registry: ModelRegistry, service: InferenceService, regressor_onnx: bytes
) -> None:
    original = trained_elsewhere()
    path = tmp_path / "regressor.onnx"
    path.write_bytes(regressor_onnx)

    imported = import_onnx(path)
    manifest = publish_imported(imported, registry, "imported")

    assert manifest.signature.inputs == [X]
    assert manifest.signature.outputs == [Y]
    assert manifest.parity is None
    assert manifest.params["source"] == SOURCE_ONNX
    assert manifest.params["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [a.path for a in manifest.artifacts] == [MODEL_FILE, CARD_FILE]
    card = registry.read_artifact(manifest, manifest.artifact(CARD_FILE)).decode()
    assert "parity was not measured" in card
    x = np.random.default_rng(4).standard_normal((3, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(
        served(service, "imported", ("input", "FP32", x)), eager(original, x), atol=1e-5
    )


def test_an_onnx_file_brings_the_external_data_its_graph_references(
    tmp_path: Path, registry: ModelRegistry, service: InferenceService, regressor_onnx: bytes
) -> None:
    original = trained_elsewhere()
    path = save_with_external_data(regressor_onnx, tmp_path / "regressor.onnx")
    (tmp_path / "unrelated.bin").write_bytes(b"not referenced by the graph")

    imported = import_onnx(path)
    manifest = publish_imported(imported, registry, "imported-external")

    assert manifest.model_data_files == [DATA_FILE]
    assert sorted(a.path for a in manifest.artifacts) == [CARD_FILE, MODEL_FILE, DATA_FILE]
    assert imported.files[DATA_FILE] == tmp_path / DATA_FILE
    x = np.ones((2, FEATURES), dtype=np.float32)
    np.testing.assert_allclose(
        served(service, "imported-external", ("input", "FP32", x)), eager(original, x), atol=1e-5
    )


def test_publishing_re_checks_the_bytes_it_publishes(
    tmp_path: Path, registry: ModelRegistry, s3: Any, regressor_onnx: bytes
) -> None:
    path = tmp_path / "regressor.onnx"
    path.write_bytes(regressor_onnx)
    imported = import_onnx(path)
    proto = onnx.load_model_from_string(regressor_onnx)
    proto.producer_name = "someone else"
    swapped = dataclasses.replace(imported, files={**imported.files, MODEL_FILE: proto.SerializeToString()})

    with pytest.raises(ModelCheckFailed, match="expected the graph imported with sha256"):
        publish_imported(swapped, registry, "swapped")
    assert keys_in(s3, registry) == 0


def test_bytes_that_are_not_onnx_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"these bytes are not an ONNX model at all")

    with pytest.raises(ModelCheckFailed, match="expected an ONNX model") as raised:
        import_onnx(path)

    assert str(path) in raised.value.message


def test_a_missing_onnx_file_is_the_callers_mistake(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"expected an ONNX file at .*missing\.onnx, found none"):
        import_onnx(tmp_path / "missing.onnx")


def with_external_location(model: bytes, tmp_path: Path, location: str) -> Path:
    """A real model in tmp_path/model/ whose weights sit in tmp_path/, under a rewritten location."""
    folder = tmp_path / "model"
    folder.mkdir()
    save_with_external_data(model, tmp_path / MODEL_FILE)
    proto = onnx.load(str(tmp_path / MODEL_FILE), load_external_data=False)
    for initializer in proto.graph.initializer:
        for entry in initializer.external_data:
            if entry.key == "location":
                entry.value = location
    path = folder / MODEL_FILE
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("location", "why"),
    [
        (f"../{DATA_FILE}", "a path with '..'"),
        (f"weights/../../{DATA_FILE}", "a path with '..'"),
        ("/etc/passwd", "an absolute path"),
        ("manifest.json", "a name reserved"),
        ("missing.data", "no file at"),
    ],
)
def test_an_external_data_location_outside_the_models_folder_is_refused(
    tmp_path: Path, regressor_onnx: bytes, location: str, why: str
) -> None:
    path = with_external_location(regressor_onnx, tmp_path, location)

    with pytest.raises(ModelCheckFailed) as raised:
        import_onnx(path)

    assert f"external data location {location!r}" in raised.value.message
    assert why in raised.value.message


def test_an_external_data_file_that_is_a_symlink_is_refused(tmp_path: Path, regressor_onnx: bytes) -> None:
    path = with_external_location(regressor_onnx, tmp_path, "linked.bin")
    (path.parent / "linked.bin").symlink_to(tmp_path / DATA_FILE)

    with pytest.raises(ModelCheckFailed, match=r"'linked\.bin': expected a relative file .* got a symlink"):
        import_onnx(path)


def test_a_graph_that_cannot_run_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    # Valid to onnx.checker, and it opens: only running it shows a [batch, 4] cannot become [3].
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["output"])],
        "cannot-run",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [3])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [1], [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "cannot_run.onnx"
    path.write_bytes(model.SerializeToString())

    with pytest.raises(ModelCheckFailed, match=r"running the graph once on zero inputs \(input \[1, 4\]\)"):
        import_onnx(path)


def test_a_graph_file_past_protobufs_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.onnx"
    with path.open("wb") as sparse:
        sparse.truncate(MAX_GRAPH_FILE_BYTES + 1)  # sparse: no disk, and reading it would take seconds

    with pytest.raises(InvalidInput) as raised:
        import_onnx(path)

    assert raised.value.status == 400
    assert f"got {MAX_GRAPH_FILE_BYTES + 1:,} bytes at {path}" in raised.value.message
    assert "at most 2 GiB" in raised.value.message
    assert "save the weights as external data" in raised.value.message


def test_external_data_changed_after_the_import_is_refused_at_publish(
    tmp_path: Path, registry: ModelRegistry, s3: Any, regressor_onnx: bytes
) -> None:
    path = save_with_external_data(regressor_onnx, tmp_path / "regressor.onnx")
    imported = import_onnx(path)
    data = tmp_path / DATA_FILE
    weights = bytearray(data.read_bytes())
    weights[0] ^= 0xFF
    data.write_bytes(bytes(weights))
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 1_000_000))

    with pytest.raises(ModelCheckFailed, match=r"expected the external data 'weights\.bin' unchanged since"):
        publish_imported(imported, registry, "changed")
    assert keys_in(s3, registry) == 0


def test_external_data_swapped_for_another_file_is_refused_at_publish(
    tmp_path: Path, registry: ModelRegistry, s3: Any, regressor_onnx: bytes
) -> None:
    path = save_with_external_data(regressor_onnx, tmp_path / "regressor.onnx")
    imported = import_onnx(path)
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes((tmp_path / DATA_FILE).read_bytes())
    swapped = dataclasses.replace(imported, files={**imported.files, DATA_FILE: elsewhere})

    with pytest.raises(ModelCheckFailed, match=r"expected the file checked at import"):
        publish_imported(swapped, registry, "swapped")
    assert keys_in(s3, registry) == 0


def test_importing_an_onnx_file_does_not_import_torch() -> None:
    # `maas publish` of a large model must stay in bounded memory: torch alone costs about 230 MB.
    code = "import sys, maas.training.byo.onnx_import; sys.exit(1 if 'torch' in sys.modules else 0)"

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
