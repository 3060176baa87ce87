"""Vets a graph file before onnxruntime opens it: it must be an ONNX ModelProto, and every external-data
file it names must be one of the version's own verified files.

onnxruntime opens whatever it is handed, and a graph names its external-data files itself: a location such
as `/etc/passwd`, `../other-model/weights.bin` or onnxruntime's in-memory marker would make it read bytes
no checksum covers. A pickle uploaded as `model.onnx` must be refused as what it is, not half-parsed.

The functions may not import the `onnx` package, so this reads the protobuf wire format itself, walking
only the messages that can hold a tensor (field numbers from onnx.proto):

    ModelProto        graph=7, training_info=20, functions=25
    TrainingInfoProto initialization=1, algorithm=2              (GraphProto)
    FunctionProto     node=7, attribute_proto=11
    GraphProto        node=1, initializer=5, sparse_initializer=15
    NodeProto         attribute=5
    AttributeProto    t=5, g=6, tensors=10, graphs=11, sparse_tensor=22, sparse_tensors=23
    SparseTensorProto values=1, indices=2                        (TensorProto)
    TensorProto       external_data=13 (StringStringEntryProto key=1, value=2), data_location=14

Every other field is skipped by its length: a graph's hundreds of megabytes of raw_data are stepped over by
index, never copied.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import IntEnum
from typing import TypeAlias

from maas.errors import IntegrityError, MaasError
from maas.registry.integrity import integrity_failure
from maas.registry.manifest import SAFE_RELATIVE_PATH

# The key of a TensorProto.external_data entry that names the file.
LOCATION_KEY = "location"
# protobuf's own default recursion limit: a graph nested deeper would not parse in onnxruntime either.
MAX_NESTING = 100
# A protobuf tag is a 32-bit varint (at most 5 bytes) whose field number has 29 bits.
MAX_TAG_BYTES = 5
MAX_FIELD_NUMBER = (1 << 29) - 1
# A location is the graph's text, not a client's payload, but it can be any length.
SHOWN_LOCATION_CHARS = 100

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_Buffer: TypeAlias = bytes | memoryview
_SAFE_PATH = re.compile(SAFE_RELATIVE_PATH)
_DRIVE = re.compile(r"^[A-Za-z]:")


class NotAModelProto(ValueError):
    """The bytes are not a well-formed ONNX ModelProto; the message says where parsing stopped."""


class _Kind(IntEnum):
    MODEL = 0
    TRAINING_INFO = 1
    FUNCTION = 2
    GRAPH = 3
    NODE = 4
    ATTRIBUTE = 5
    SPARSE_TENSOR = 6
    TENSOR = 7
    STRING_ENTRY = 8

    @property
    def proto(self) -> str:
        """The message's name in onnx.proto, for error messages."""
        return _PROTO_NAMES[self]


_PROTO_NAMES = {
    _Kind.MODEL: "ModelProto",
    _Kind.TRAINING_INFO: "TrainingInfoProto",
    _Kind.FUNCTION: "FunctionProto",
    _Kind.GRAPH: "GraphProto",
    _Kind.NODE: "NodeProto",
    _Kind.ATTRIBUTE: "AttributeProto",
    _Kind.SPARSE_TENSOR: "SparseTensorProto",
    _Kind.TENSOR: "TensorProto",
    _Kind.STRING_ENTRY: "StringStringEntryProto",
}


# field number -> the message it holds, for the fields walked into.
_CHILDREN: dict[_Kind, dict[int, _Kind]] = {
    _Kind.MODEL: {7: _Kind.GRAPH, 20: _Kind.TRAINING_INFO, 25: _Kind.FUNCTION},
    _Kind.TRAINING_INFO: {1: _Kind.GRAPH, 2: _Kind.GRAPH},
    _Kind.FUNCTION: {7: _Kind.NODE, 11: _Kind.ATTRIBUTE},
    _Kind.GRAPH: {1: _Kind.NODE, 5: _Kind.TENSOR, 15: _Kind.SPARSE_TENSOR},
    _Kind.NODE: {5: _Kind.ATTRIBUTE},
    _Kind.ATTRIBUTE: {
        5: _Kind.TENSOR,
        6: _Kind.GRAPH,
        10: _Kind.TENSOR,
        11: _Kind.GRAPH,
        22: _Kind.SPARSE_TENSOR,
        23: _Kind.SPARSE_TENSOR,
    },
    _Kind.SPARSE_TENSOR: {1: _Kind.TENSOR, 2: _Kind.TENSOR},
    _Kind.TENSOR: {13: _Kind.STRING_ENTRY},
    _Kind.STRING_ENTRY: {},
}
# The wire type of known singular fields that are not walked into. A field of the wrong wire type is what
# tells other formats apart; repeated scalars are left out, since packed and unpacked are both legal.
_SCALARS: dict[_Kind, dict[int, int]] = {
    # ir_version, producer_name, producer_version, domain, model_version, doc_string, opset_import,
    # metadata_props, configuration
    _Kind.MODEL: {1: _VARINT, 2: _LEN, 3: _LEN, 4: _LEN, 5: _VARINT, 6: _LEN, 8: _LEN, 14: _LEN, 26: _LEN},
    _Kind.FUNCTION: {1: _LEN, 4: _LEN, 5: _LEN, 6: _LEN, 8: _LEN, 9: _LEN, 10: _LEN},
    # name, doc_string, input, output, value_info
    _Kind.GRAPH: {2: _LEN, 10: _LEN, 11: _LEN, 12: _LEN, 13: _LEN},
    # input, output, name, op_type, doc_string, domain
    _Kind.NODE: {1: _LEN, 2: _LEN, 3: _LEN, 4: _LEN, 6: _LEN, 7: _LEN},
    # name, f, i, s, doc_string, type, ref_attr_name
    _Kind.ATTRIBUTE: {1: _LEN, 2: _I32, 3: _VARINT, 4: _LEN, 13: _LEN, 20: _VARINT, 21: _LEN},
    # data_type, name, raw_data, doc_string, data_location
    _Kind.TENSOR: {2: _VARINT, 8: _LEN, 9: _LEN, 12: _LEN, 14: _VARINT},
    _Kind.SPARSE_TENSOR: {},
    _Kind.TRAINING_INFO: {},
    _Kind.STRING_ENTRY: {1: _LEN, 2: _LEN},
}

# Per message: field number -> (its wire type, or -1 when not checked; the message walked into, if any).
_SCHEMA: dict[_Kind, dict[int, tuple[int, _Kind | None]]] = {
    kind: {
        **{field: (wire, None) for field, wire in _SCALARS[kind].items()},
        **{field: (_LEN, child) for field, child in _CHILDREN[kind].items()},
    }
    for kind in _Kind
}
_UNKNOWN: tuple[int, _Kind | None] = (-1, None)


def external_data_locations(data: bytes | bytearray | memoryview) -> list[str]:
    """Every external-data location the graph's tensors name, in first-seen order, each once.

    Raises NotAModelProto for bytes that are not a ModelProto with an ir_version and a graph: a pickle,
    a zip (torch.save), truncated or mis-typed fields."""
    # bytes index fastest; a view of anything else is read in place, never copied.
    buffer: _Buffer = data if isinstance(data, bytes) else memoryview(data).cast("B")
    locations: dict[str, None] = {}
    seen = _walk(buffer, 0, len(buffer), _Kind.MODEL, depth=1, locations=locations)
    missing = [name for field, name in ((1, "ir_version"), (7, "graph")) if field not in seen]
    if missing:
        raise NotAModelProto(f"no {' and no '.join(missing)}")
    return list(locations)


def vet_graph_file(
    data: bytes | bytearray | memoryview,
    *,
    data_files: Collection[str],
    what: str,
    error: type[MaasError],
) -> list[str]:
    """Refuse a graph file that is not a ModelProto, or that names external data other than `data_files`
    (the version's own checksummed files); returns the locations it names.

    `what` names the file in messages ("model.onnx of model 'x' v3"); `error` is the caller's to choose,
    since a bad graph is a client's mistake at publish and an integrity failure at load. At publish the
    message shows the publisher what its file holds; at load that is stored content, kept for the logs."""
    try:
        locations = external_data_locations(data)
    except NotAModelProto as exc:
        raise _refusal(
            error,
            f"{what}: expected an ONNX ModelProto, got bytes that do not parse as one (a pickle or another "
            "format?)",
            str(exc),
        ) from None
    for location in locations:
        problem = unsafe_location(location)
        if problem is None and location not in data_files:
            problem = "not one of the manifest's model_data_files"
        if problem is not None:
            raise _refusal(
                error,
                f"{what}: an external data location in the graph is {problem}; expected a relative path "
                "inside the version folder, one of the manifest's model_data_files",
                f"location {_shown(location)}, model_data_files {sorted(data_files)}",
            )
    return locations


def _refusal(error: type[MaasError], message: str, detail: str) -> MaasError:
    if issubclass(error, IntegrityError):
        return integrity_failure(message, detail)
    return error(f"{message} ({detail})")


def unsafe_location(location: str) -> str | None:
    """Why `location` cannot name a file inside the version folder, or None when it can."""
    if not location:
        return "empty"
    if "\x00" in location:
        return "a path with a NUL character"
    if "\\" in location:
        return "a path with a backslash"
    if location.startswith("/"):
        return "an absolute path"
    if _DRIVE.match(location):
        return "a path with a drive letter"
    segments = location.split("/")
    if ".." in segments:
        return "a path with a '..' segment"
    if "." in segments or "" in segments:
        return "a path with an empty or '.' segment"
    if not _SAFE_PATH.fullmatch(location):
        return "a name the registry cannot store (letters, digits, '_', '-' and '.' per segment)"
    return None


def _walk(
    buffer: _Buffer, start: int, end: int, kind: _Kind, *, depth: int, locations: dict[str, None]
) -> set[int]:
    """Check the message in buffer[start:end] and walk into the fields that can hold tensors; returns the
    field numbers seen.

    Positions index the one buffer throughout, so nothing is sliced or copied but the few strings read.
    The loop is written out (single-byte varints inline) because a graph can have a hundred thousand nodes.
    """
    if depth > MAX_NESTING:
        raise NotAModelProto(f"messages nested more than {MAX_NESTING} deep at byte {start}")
    schema = _SCHEMA[kind]
    seen: set[int] = set()
    entry: dict[int, str] = {}
    position = start
    while position < end:
        key = buffer[position]
        if key < 0x80:
            position += 1
        else:
            tag_start = position
            key, position = _varint(buffer, position, end)
            # protobuf reads a tag into 32 bits and drops the rest, so an overlong tag would be one field
            # to onnxruntime and another (unknown, skipped) here: refuse any tag not read the same way.
            if position - tag_start > MAX_TAG_BYTES or key >> 3 > MAX_FIELD_NUMBER:
                raise NotAModelProto(
                    f"field tag at byte {tag_start}: expected at most {MAX_TAG_BYTES} bytes "
                    f"and a field number below 2^29, got {position - tag_start} bytes"
                )
        field, wire = key >> 3, key & 7
        if field == 0:
            raise NotAModelProto(f"field number 0 at byte {position}")
        seen.add(field)
        expected, child = schema.get(field, _UNKNOWN)
        if expected >= 0 and wire != expected:
            raise NotAModelProto(
                f"field {field} of {kind.proto} at byte {position}: expected wire type {expected}, got {wire}"
            )
        if wire == _LEN:
            if position >= end:
                raise NotAModelProto(f"truncated varint at byte {position}")
            length = buffer[position]
            if length < 0x80:
                position += 1
            else:
                length, position = _varint(buffer, position, end)
            if length > end - position:
                raise NotAModelProto(
                    f"field {field} of {kind.proto} at byte {position} is {length} bytes long, "
                    f"but only {end - position} remain"
                )
            if child is not None:
                _walk(buffer, position, position + length, child, depth=depth + 1, locations=locations)
            elif kind is _Kind.STRING_ENTRY:
                entry[field] = _text(buffer, position, position + length)
            position += length
        elif wire == _VARINT:
            _, position = _varint(buffer, position, end)
        elif wire in (_I64, _I32):
            position += 8 if wire == _I64 else 4
            if position > end:
                raise NotAModelProto(f"field {field} of {kind.proto} is truncated at byte {end}")
        else:
            # 3 and 4 are proto2 groups, which onnx.proto never uses; 6 and 7 do not exist.
            raise NotAModelProto(f"field {field} at byte {position}: wire type {wire} is not used by ONNX")
    # Only TensorProto.external_data is walked into as string entries, so each one here is a tensor's.
    # Locations count whatever the tensor's data_location says: refusing a stale one costs nothing.
    if kind is _Kind.STRING_ENTRY and entry.get(1) == LOCATION_KEY:
        locations.setdefault(entry.get(2, ""), None)
    return seen


def _varint(buffer: _Buffer, position: int, end: int) -> tuple[int, int]:
    result = shift = 0
    start = position
    while True:
        if position >= end:
            raise NotAModelProto(f"truncated varint at byte {start}")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift >= 70:
            raise NotAModelProto(f"varint longer than 10 bytes at byte {start}")


def _text(buffer: _Buffer, start: int, end: int) -> str:
    try:
        return str(buffer[start:end], "utf-8")
    except UnicodeDecodeError:
        raise NotAModelProto(f"string at byte {start} is not UTF-8") from None


def _shown(location: str) -> str:
    if len(location) <= SHOWN_LOCATION_CHARS:
        return repr(location)
    return f"{location[:SHOWN_LOCATION_CHARS]!r}... ({len(location)} characters)"
