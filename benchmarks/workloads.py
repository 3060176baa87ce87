"""What the speed cases run: a model's inputs at a batch size, texts of realistic length, the HTTP API v2
events the infer function receives for them (V2 JSON or Triton's binary tensors), the graph's own feeds,
and how many repeats fit a time budget.

Every case builds its inputs here, so the handler, the bare session and torch all see the same numbers.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from tests.support.events import load_event

from benchmarks.harness import BenchError
from maas.datatypes import BY_V2, from_numpy
from maas.runtime import TextTokenizer

if TYPE_CHECKING:
    from maas.training import TrainedModel

BATCH_SIZES = (1, 32)
TEXT_SEED = 20261129
HEADER_LENGTH = "inference-header-content-length"
JSON_CONTENT = "application/json"
BINARY_CONTENT = "application/octet-stream"
CALIBRATION_ROUNDS = 3
Array = npt.NDArray[Any]
Feeds = dict[str, Array]


def realistic_texts(count: int, seed: int = TEXT_SEED) -> list[str]:
    """`count` sentences of 10-25 words (about 18 on average): two clauses of the text recipes' generator
    joined, so a text model sees its own vocabulary at the length of a typical short review or query."""
    from maas.training.text_data import make_sentiment_corpus

    clauses, _ = make_sentiment_corpus(2 * count, seed)
    return [f"{first}, and {second}" for first, second in zip(clauses[::2], clauses[1::2], strict=True)][
        :count
    ]


def take_rows(array: Array, batch: int) -> Array:
    """The first `batch` rows, wrapping around a test set smaller than the batch."""
    return np.ascontiguousarray(np.take(array, np.arange(batch), axis=0, mode="wrap"))


def text_tokenizer(trained: TrainedModel) -> TextTokenizer | None:
    """The serving tokenizer of a text model as the runtime configures it for a graph whose sequence axis is
    dynamic (every text recipe's); None for other models."""
    preprocessing = trained.draft.preprocessing
    if preprocessing is None or preprocessing.tokenizer is None:
        return None
    tokenizer = preprocessing.tokenizer
    return TextTokenizer(trained.files[tokenizer.tokenizer_file], tokenizer)


@dataclass(frozen=True, slots=True)
class Workload:
    """One batch for one model: what a client sends (`serving`) and what the graph is fed (`graph`).

    For a text model `serving` holds the texts and `graph` the ids the runtime's tokenizer makes of them;
    for any other model both are the same arrays."""

    serving: Feeds
    graph: Feeds
    texts: list[str] | None = None

    @property
    def batch(self) -> int:
        return len(next(iter(self.serving.values())))


def workload(trained: TrainedModel, batch: int) -> Workload:
    tokenizer = text_tokenizer(trained)
    if tokenizer is None:
        inputs = {name: take_rows(array, batch) for name, array in trained.test_inputs.items()}
        return Workload(serving=inputs, graph=inputs)
    texts = realistic_texts(batch)
    strings = np.asarray(texts, dtype=object)
    datatypes = {spec.name: spec.datatype for spec in trained.draft.signature.inputs}
    graph = {
        name: ids.astype(BY_V2[datatypes[name]].numpy, copy=False)
        for name, ids in tokenizer.encode(strings).items()
    }
    return Workload(serving={tokenizer.input_name: strings}, graph=graph, texts=texts)


def v2_datatype(array: Array) -> str:
    datatype = from_numpy(array.dtype)
    if datatype is None:
        raise BenchError(f"input: expected a dtype V2 can carry, got {array.dtype}")
    return datatype.v2


def json_document(inputs: Mapping[str, Array]) -> dict[str, Any]:
    """A V2 JSON request as tritonclient sends it: flat row-major data beside the shape."""
    return {
        "inputs": [
            {
                "name": name,
                "datatype": v2_datatype(array),
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
            for name, array in inputs.items()
        ]
    }


def binary_body(inputs: Mapping[str, Array], *, binary_outputs: bool = True) -> tuple[bytes, int]:
    """A Triton binary tensor request: the JSON header, then each input's bytes; returns (body, header
    length). With `binary_outputs` every output comes back binary too, as tritonclient asks by default."""
    items: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in inputs.items():
        chunk = _binary_chunk(array)
        chunks.append(chunk)
        items.append(
            {
                "name": name,
                "datatype": v2_datatype(array),
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(chunk)},
            }
        )
    document: dict[str, Any] = {"inputs": items}
    if binary_outputs:
        document["parameters"] = {"binary_data_output": True}
    header = json.dumps(document).encode()
    return header + b"".join(chunks), len(header)


def _binary_chunk(array: Array) -> bytes:
    if array.dtype == np.object_:
        # Triton's BYTES layout: a little-endian uint32 length, then the element's bytes.
        parts = [item.encode() if isinstance(item, str) else bytes(item) for item in array.ravel()]
        return b"".join(struct.pack("<I", len(part)) + part for part in parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def json_infer_event(model: str, inputs: Mapping[str, Array]) -> dict[str, Any]:
    """The HTTP API v2 event API Gateway sends for POST /v2/models/<model>/infer with a JSON body."""
    body = json.dumps(json_document(inputs))
    return _infer_event(model, body, is_base64=False, headers={"content-type": JSON_CONTENT}, size=len(body))


def binary_infer_event(model: str, inputs: Mapping[str, Array]) -> dict[str, Any]:
    """The same request in Triton's binary format; API Gateway hands a binary body over base64-encoded."""
    body, header_length = binary_body(inputs)
    return _infer_event(
        model,
        base64.b64encode(body).decode(),
        is_base64=True,
        headers={"content-type": BINARY_CONTENT, HEADER_LENGTH: str(header_length)},
        size=len(body),
    )


def _infer_event(
    model: str, body: str, *, is_base64: bool, headers: Mapping[str, str], size: int
) -> dict[str, Any]:
    event = load_event("http_v2_infer.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = infer_path(model)
    event["pathParameters"] = {"name": model}
    event["headers"] = {**event["headers"], **headers, "content-length": str(size)}
    event["body"] = body
    event["isBase64Encoded"] = is_base64
    return event


def repeats_within(calls: tuple[Callable[[], object], ...], budget_s: float, *, least: int, most: int) -> int:
    """How many rounds of `calls` fit `budget_s`, between `least` and `most`, from up to three timed rounds
    (fewer once they have used a tenth of the budget), which also warm each call up.

    The slowest round decides, so one lucky round on a busy machine cannot make the case run for minutes."""
    slowest = 0.0
    spent = 0.0
    for _ in range(CALIBRATION_ROUNDS):
        started = time.perf_counter()
        for call in calls:
            call()
        elapsed = time.perf_counter() - started
        slowest, spent = max(slowest, elapsed), spent + elapsed
        if spent > budget_s / 10:
            break
    return max(least, min(most, int(budget_s / max(slowest, 1e-9))))
