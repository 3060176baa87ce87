"""Model supply chain: only verified ONNX files, inside their own version folder, ever reach onnxruntime.

Given a moto bucket, real onnxruntime and tiny real ONNX graphs, each hostile input below (a path that
climbs out of the registry, a graph that names files outside its version, a pickle posing as model.onnx,
an artifact changed after publishing) must be refused with an error that says what was expected, and
nothing may be loaded: the model cache stays empty.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest

from maas.config import Settings
from maas.errors import IntegrityError, InvalidInput, MaasError
from maas.infer_types import InferenceRequest, Tensor
from maas.registry import ModelRef, ModelRegistry, parse_ref
from maas.registry.manifest import MODEL_FILE
from maas.registry.onnx_graph_file import NotAModelProto, external_data_locations
from maas.runtime import write_model_files
from maas.service.inference import InferenceService
from tests.security.hostile_models import (
    DATA_FILE,
    WEIGHTS,
    WIDTH,
    add_weights_files,
    add_weights_graph,
    plant_version,
)
from tests.security.rows import Rows
from tests.support.aws import TEST_BUCKET
from tests.support.events import json_event
from tests.support.functions import start_function

NAME = "adder"
# onnxruntime reads an external tensor at this "location" from a raw memory address.
ORT_MEMORY_MARKER = "*/_ORT_MEM_ADDR_/*"
UNPICKLED: list[str] = []


class _Tripwire:
    """Unpickling this records it: a test that finds a record proves something ran pickle.loads."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (UNPICKLED.append, ("unpickled",))


def request(rows: int = 2) -> InferenceRequest:
    return InferenceRequest(inputs=[Tensor("x", "FP32", np.ones((rows, WIDTH), dtype=np.float32))])


@pytest.fixture
def service(registry: ModelRegistry) -> InferenceService:
    return InferenceService(registry, Settings(bucket=TEST_BUCKET, provider="cpu"))


def assert_refused_and_nothing_loaded(
    service: InferenceService, version: int, error: type[MaasError], match: str
) -> None:
    with pytest.raises(error, match=match):
        service.infer(ModelRef(NAME, version=version), request())
    assert service.cache.loaded_keys() == []


# ---- a good model, so each refusal below is for its own reason --------------------------------------


def test_a_published_model_with_external_data_loads_and_answers(
    registry: ModelRegistry, service: InferenceService
) -> None:
    files, draft = add_weights_files()
    manifest = registry.publish(NAME, files, draft)

    response = service.infer(ModelRef(NAME), request())

    np.testing.assert_array_equal(response.outputs[0].array, np.ones((2, WIDTH)) + WEIGHTS)
    assert manifest.model_data_files == [DATA_FILE]
    assert service.cache.loaded_keys() == [(NAME, 1)]


# ---- path traversal in names and references ------------------------------------------------------

TRAVERSALS = [
    "..",
    "../x",
    "a/../../b",
    "%2e%2e",
    "%2e%2e%2fx",
    "m/versions/../../other",
    "m/versions/..%2f..%2fother",
    "m@../x",
    "m@..",
    "./m",
    "m\\..\\x",
    "/etc/passwd",
    "m/versions/1/../../2",
]


@pytest.mark.parametrize("text", TRAVERSALS)
def test_a_reference_that_climbs_out_of_the_registry_is_a_400(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_ref(text)
    assert refused.value.status == 400


HOSTILE_NAMES = ["..", "../x", "a/../../b", "%2e%2e", "x/../../other"]


def test_the_registry_refuses_each_hostile_name_before_any_storage_call(
    registry: ModelRegistry, service: InferenceService
) -> None:
    files, draft = add_weights_files()
    rows = Rows()
    for name in HOSTILE_NAMES:
        with rows.case(name):
            with pytest.raises(InvalidInput, match="model name"):
                registry.publish(name, files, draft)
            with pytest.raises(InvalidInput, match="model name"):
                registry.versions(name)
            with pytest.raises(InvalidInput, match="model name"):
                service.infer(ModelRef(name), request())
            assert registry.list_models() == []
            assert service.cache.loaded_keys() == []
    rows.assert_all_passed()


@pytest.fixture
def infer_function(monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry) -> ModuleType:
    files, draft = add_weights_files()
    registry.publish(NAME, files, draft)
    return start_function(monkeypatch, "infer")


def http_infer(function: ModuleType, path: str) -> dict[str, Any]:
    event = json_event(
        "POST",
        path,
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [1.0] * WIDTH}]},
    )
    response: dict[str, Any] = function.lambda_handler(event, None)
    return response


TRAVERSAL_PATHS = [
    "/v2/models/%2e%2e/infer",
    "/v2/models/..%2Fadder/infer",
    "/v2/models/a%2F..%2F..%2Fb/infer",
    "/v2/models/%2E%2E%2F%2E%2E%2Fetc/infer",
    "/v2/models/adder/versions/..%2F..%2Fother/infer",
    "/v2/models/adder/versions/%2e%2e/infer",
    "/v2/models/..%5Cadder/infer",
    "/v1/models/..%2Fadder:predict",
]


def test_the_infer_handler_answers_each_traversal_in_the_path_with_a_400_and_loads_nothing(
    infer_function: ModuleType,
) -> None:
    rows = Rows()
    for path in TRAVERSAL_PATHS:
        with rows.case(path):
            response = http_infer(infer_function, path)

            assert response["statusCode"] == 400, response["body"]
            assert "expected" in json.loads(response["body"])["error"]
            assert infer_function.app.service.cache.loaded_keys() == []
    rows.assert_all_passed()

    # The same function still serves the real model: the refusals were for the paths, not the model.
    response = http_infer(infer_function, f"/v2/models/{NAME}/infer")
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["outputs"][0]["data"] == (1.0 + WEIGHTS).tolist()


# ---- external-data locations ---------------------------------------------------------------------

HOSTILE_LOCATIONS = [
    ("/etc/passwd", "an absolute path"),
    ("../outside.bin", "a path with a '..' segment"),
    ("weights/../../outside.bin", "a path with a '..' segment"),
    ("C:/Windows/win.ini", "a path with a drive letter"),
    ("..\\outside.bin", "a path with a backslash"),
    ("./weights.bin", r"a path with an empty or '\.' segment"),
    ("weights//weights.bin", r"a path with an empty or '\.' segment"),
    ("", "empty"),
    ("weights.bin\x00.txt", "a path with a NUL character"),
    (ORT_MEMORY_MARKER, "a name the registry cannot store"),
    ("x" * 5000, "not one of the manifest's model_data_files"),
]


def test_a_graph_naming_data_outside_its_version_is_refused_at_load(
    s3: Any, service: InferenceService
) -> None:
    # Each location is planted as a version of its own, so every row loads a version no other row touched.
    rows = Rows()
    for version, (location, category) in enumerate(HOSTILE_LOCATIONS, start=1):
        with rows.case(location):
            files, draft = add_weights_files()
            # The manifest is honest about weights.bin, the graph points elsewhere.
            files[MODEL_FILE] = add_weights_graph(location)
            plant_version(s3, TEST_BUCKET, NAME, version, files, draft)

            with pytest.raises(IntegrityError, match=f"external data location .* is {category}") as refused:
                service.infer(ModelRef(NAME, version=version), request())

            assert service.cache.loaded_keys() == []
            assert refused.value.message.startswith(f"model.onnx of model '{NAME}' v{version}: ")
            # A location is the graph's text, not ours to repeat in full.
            assert len(refused.value.message) < 400
    rows.assert_all_passed()


def test_publish_refuses_a_graph_naming_data_outside_its_version_before_uploading(
    registry: ModelRegistry, s3: Any
) -> None:
    rows = Rows()
    for location, category in HOSTILE_LOCATIONS:
        with rows.case(location):
            files, draft = add_weights_files()
            files[MODEL_FILE] = add_weights_graph(location)

            with pytest.raises(InvalidInput, match=f"external data location .* is {category}"):
                registry.publish(NAME, files, draft)

            assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount") == 0
    rows.assert_all_passed()


def _initializer_behind_an_overlong_tag(location: str) -> bytes:
    """add_weights_graph with its initializer moved behind a 5-byte tag whose bit 32 is set. protobuf keeps
    the low 32 bits and reads graph field 5 (an initializer); a reader keeping all bits would see an
    unknown field 2^29 + 5 and skip the tensor, with its external-data location."""
    model = onnx.load_from_string(add_weights_graph(location))
    (initializer,) = model.graph.initializer
    tensor: bytes = initializer.SerializeToString()
    model.graph.ClearField("initializer")
    graph: bytes = (
        model.graph.SerializeToString()
        + bytes([0xAA, 0x80, 0x80, 0x80, 0x10])
        + _varint(len(tensor))
        + tensor
    )
    model.ClearField("graph")
    without_graph: bytes = model.SerializeToString()
    return without_graph + bytes([0x3A]) + _varint(len(graph)) + graph


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def test_an_initializer_hidden_behind_an_overlong_field_tag_is_refused(
    s3: Any, service: InferenceService, registry: ModelRegistry
) -> None:
    files, draft = add_weights_files()
    files[MODEL_FILE] = _initializer_behind_an_overlong_tag("../outside.bin")

    with pytest.raises(InvalidInput, match=r"field tag at byte .* field number below 2\^29"):
        registry.publish(NAME, files, draft)
    plant_version(s3, TEST_BUCKET, NAME, 1, files, draft)
    assert_refused_and_nothing_loaded(service, 1, IntegrityError, "expected an ONNX ModelProto")


def test_a_location_not_listed_in_the_manifest_is_refused_even_when_the_file_was_published(
    s3: Any, service: InferenceService, registry: ModelRegistry
) -> None:
    # other.bin is a checksummed artifact of the version, but not one the manifest says the graph reads.
    files, draft = add_weights_files()
    files[MODEL_FILE] = add_weights_graph("other.bin")
    files["other.bin"] = WEIGHTS.tobytes()
    plant_version(s3, TEST_BUCKET, NAME, 1, files, draft)

    # The location is the stored graph's text: named in the logs, not to callers.
    assert_refused_and_nothing_loaded(
        service, 1, IntegrityError, r"location in the graph is not one of the manifest's model_data_files"
    )
    with pytest.raises(InvalidInput, match="not one of the manifest's model_data_files"):
        registry.publish("another", files, draft)


def test_external_data_inside_a_subgraph_is_found_too(s3: Any, service: InferenceService) -> None:
    files, draft = add_weights_files()
    files[MODEL_FILE] = add_weights_graph("../outside.bin", in_subgraph=True)
    plant_version(s3, TEST_BUCKET, NAME, 1, files, draft)

    assert_refused_and_nothing_loaded(service, 1, IntegrityError, "'..' segment")


def test_model_files_are_never_written_outside_their_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for path in ("../escaped.bin", "/tmp/escaped.bin", "a/../../escaped.bin"):
        with pytest.raises(IntegrityError, match="resolves outside"):
            write_model_files(folder, {path: b"x"})
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model"]


# ---- links when publishing from a folder ---------------------------------------------------------


def test_importing_a_folder_whose_external_data_is_a_symlink_is_refused(tmp_path: Path) -> None:
    from maas.training import ModelCheckFailed
    from maas.training.byo.onnx_import import import_onnx

    outside = tmp_path / "secrets.bin"
    outside.write_bytes(WEIGHTS.tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(add_weights_graph(DATA_FILE))
    (folder / DATA_FILE).symlink_to(outside)

    with pytest.raises(ModelCheckFailed, match=r"'weights\.bin': expected a relative file .* got a symlink"):
        import_onnx(folder / MODEL_FILE)


def test_importing_a_folder_whose_graph_climbs_out_of_it_is_refused(tmp_path: Path) -> None:
    from maas.training import ModelCheckFailed
    from maas.training.byo.onnx_import import import_onnx

    (tmp_path / "outside.bin").write_bytes(WEIGHTS.tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(add_weights_graph("../outside.bin"))

    with pytest.raises(ModelCheckFailed, match=r"got a path with '\.\.'"):
        import_onnx(folder / MODEL_FILE)


def test_an_exporters_folder_holding_a_symlink_is_refused(tmp_path: Path) -> None:
    from maas.training import ModelCheckFailed
    from maas.training.export import read_folder_files

    (tmp_path / "elsewhere.bin").write_bytes(b"not the exporter's")
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(add_weights_graph())
    (folder / DATA_FILE).symlink_to(tmp_path / "elsewhere.bin")

    with pytest.raises(ModelCheckFailed, match="expected only plain files written there, got a symlink"):
        read_folder_files(folder)
    (folder / DATA_FILE).unlink()
    assert list(read_folder_files(folder)) == [MODEL_FILE]


# ---- ONNX only, never a pickle -------------------------------------------------------------------


def pickled_weights() -> bytes:
    return pickle.dumps({"weights": WEIGHTS.tolist(), "hook": _Tripwire()})


def torch_saved_weights() -> bytes:
    """What `torch.save` writes: a zip whose data.pkl torch.load would unpickle."""
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"w": torch.from_numpy(WEIGHTS)}, buffer)
    return buffer.getvalue()


NOT_ONNX: dict[str, Callable[[], bytes]] = {
    "pickle": pickled_weights,
    "pickle-protocol-0": lambda: pickle.dumps({"hook": _Tripwire()}, protocol=0),
    "torch-save": torch_saved_weights,
    "numpy-npy": lambda: _npy(WEIGHTS),
    "json": lambda: json.dumps({"graph": "model"}).encode(),
    "empty": lambda: b"",
    "truncated-onnx": lambda: add_weights_graph()[:-7],
}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_bytes_that_are_not_an_onnx_model_are_refused_with_a_correct_checksum(
    s3: Any, service: InferenceService
) -> None:
    # Each kind is planted as a version of its own, so every row loads a version no other row touched.
    rows = Rows()
    for version, kind in enumerate(NOT_ONNX, start=1):
        with rows.case(kind):
            UNPICKLED.clear()
            files, draft = add_weights_files(location=None)
            files[MODEL_FILE] = NOT_ONNX[kind]()
            plant_version(s3, TEST_BUCKET, NAME, version, files, draft)

            assert_refused_and_nothing_loaded(
                service,
                version,
                IntegrityError,
                rf"model\.onnx of model '{NAME}' v{version}: expected an ONNX ModelProto, "
                r"got bytes that do not parse as one \(a pickle or another format\?\)",
            )
            assert UNPICKLED == []
    rows.assert_all_passed()


def test_publish_refuses_bytes_that_are_not_an_onnx_model(registry: ModelRegistry, s3: Any) -> None:
    rows = Rows()
    for kind, not_onnx in NOT_ONNX.items():
        with rows.case(kind):
            UNPICKLED.clear()
            files, draft = add_weights_files(location=None)
            files[MODEL_FILE] = not_onnx()

            with pytest.raises(InvalidInput, match="expected an ONNX ModelProto"):
                registry.publish(NAME, files, draft)

            assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount") == 0
            assert UNPICKLED == []
    rows.assert_all_passed()


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"\x80", "truncated varint at byte 0"),
        (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint longer than 10 bytes"),
        (b"\x3a\x05ab", "is 5 bytes long, but only 2 remain"),
        (b"\x38\x01", "field 7 of ModelProto at byte 1: expected wire type 2, got 0"),
        (b"\x93\x03", "field 50 at byte 2: wire type 3 is not used by ONNX"),
        (b"\x00\x00", "field number 0"),
        (b"\x08\x08", "no graph"),
    ],
)
def test_the_wire_format_reader_says_where_parsing_stopped(data: bytes, where: str) -> None:
    with pytest.raises(NotAModelProto, match=where):
        external_data_locations(data)


def test_the_reader_steps_over_large_weights_without_reading_them() -> None:
    big = np.zeros(8 * 1024 * 1024, dtype=np.float32)  # 32 MB of raw_data
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "big", [x], [x], [numpy_helper.from_array(big, "w")]
    )
    content = helper.make_model(graph).SerializeToString()
    assert external_data_locations(memoryview(content)) == []


# ---- sha256 before load --------------------------------------------------------------------------


def test_an_artifact_changed_after_publishing_is_refused_and_nothing_is_cached(
    registry: ModelRegistry, service: InferenceService, s3: Any
) -> None:
    files, draft = add_weights_files()
    registry.publish(NAME, files, draft)
    key = f"models/{NAME}/versions/1/{DATA_FILE}"
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=np.full(WIDTH, 666, dtype=np.float32).tobytes())

    assert_refused_and_nothing_loaded(
        service, 1, IntegrityError, r"artifact 'weights\.bin' .* expected the sha256 and size in its manifest"
    )

    # Restored, it loads: the refusal was not cached.
    s3.put_object(Bucket=TEST_BUCKET, Key=key, Body=files[DATA_FILE])
    response = service.infer(ModelRef(NAME, version=1), request())
    np.testing.assert_array_equal(response.outputs[0].array, np.ones((2, WIDTH)) + WEIGHTS)


def test_a_graph_swapped_for_another_valid_graph_fails_its_checksum(
    registry: ModelRegistry, service: InferenceService, s3: Any
) -> None:
    files, draft = add_weights_files(location=None)
    registry.publish(NAME, files, draft)
    s3.put_object(
        Bucket=TEST_BUCKET,
        Key=f"models/{NAME}/versions/1/{MODEL_FILE}",
        Body=add_weights_graph("weights.bin"),
    )

    assert_refused_and_nothing_loaded(service, 1, IntegrityError, r"artifact 'model\.onnx' .* sha256")


def test_no_artifact_may_sit_where_the_registry_role_may_write(registry: ModelRegistry, s3: Any) -> None:
    """The registry function may write models/*/aliases/* and models/*/meta/*; in IAM a '*' spans '/', so an
    artifact under such a folder would be writable by it, inside a version that must never change."""
    files, draft = add_weights_files()
    rows = Rows()
    for path in ["aliases/production.json", "meta/3.json", "docs/meta/notes.txt"]:
        with rows.case(path):
            with pytest.raises(
                InvalidInput, match=f"artifact path '{path}': expected no folder named aliases or meta"
            ):
                registry.publish(NAME, {**files, path: b"{}"}, draft)

            assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount") == 0
    rows.assert_all_passed()
