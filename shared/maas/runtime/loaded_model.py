"""An onnxruntime session bound to the manifest it was verified against.

All I/O happens in `load_model`; `LoadedModel.run` only computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph

from maas.config import TEXT_RUN_TOKENS
from maas.datatypes import BY_V2, from_onnx
from maas.errors import DeadlineExceeded, IntegrityError, InvalidInput
from maas.registry.integrity import integrity_failure
from maas.registry.manifest import Manifest, TokenizerPreprocessing
from maas.registry.store import ModelRegistry
from maas.runtime.deadlines import WATCHDOG, Deadline
from maas.runtime.footprint import session_memory_bytes, settle_footprint
from maas.runtime.memory import release_freed_memory
from maas.runtime.session_options import SessionConfig
from maas.runtime.text import TextTokenizer, TokenizedTexts
from maas.runtime.verified_session import open_verified_session
from maas.signature import Signature, TensorSpec

# Deadline among them: batch jobs and their tests import it from here, where it lived before.
__all__ = [
    "PLATFORM",
    "Deadline",
    "LoadedModel",
    "check_signature",
    "load_model",
    "signature_of",
    "token_rows_per_run",
    "zeros_like_spec",
]

PLATFORM = "onnxruntime_onnx"
# A run option: the arena frees, at the end of the run, the memory the run made it take.
ARENA_SHRINKAGE = "memory.enable_memory_arena_shrinkage"
# The element types a tokenizer's ids can be handed to the graph in.
TOKEN_ID_DATATYPES = ("INT64", "INT32")


@dataclass(frozen=True, slots=True)
class LoadedModel:
    manifest: Manifest
    session: ort.InferenceSession
    providers: tuple[str, ...]
    # Set for a model that takes text: it turns the serving input into the graph's id tensors.
    tokenizer: TextTokenizer | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def size_bytes(self) -> int:
        """What the model cache and the memory budget count: the resident memory its load measurably added
        (session and warm-up), never less than the artifact bytes it came from (decision 0022)."""
        return session_memory_bytes(self.session, floor=self.manifest.total_bytes)

    @property
    def signature(self) -> Signature:
        """What clients send and receive, which `run` takes: text for a tokenized model, else the graph's."""
        return self.manifest.serving_signature

    def run(
        self,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        *,
        deadline: Deadline | None = None,
    ) -> list[npt.NDArray[Any]]:
        """Run on the serving inputs (already checked against `signature`), returning `outputs` in order.

        A run still going at `deadline` is cut off between two nodes: DeadlineExceeded (504)."""
        if self.tokenizer is None:
            return self.run_graph(dict(inputs), outputs, deadline=deadline)
        feeds = self._tokenized(inputs)
        rows, width = next(iter(feeds.values())).shape
        try:
            return self.run_token_ids(feeds, outputs, deadline=deadline)
        finally:
            del feeds
            if rows * width > TEXT_RUN_TOKENS:
                # Tokens and activations of more than one run's worth: freed now, given back now.
                release_freed_memory()

    def run_token_ids(
        self,
        feeds: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        *,
        deadline: Deadline | None = None,
    ) -> list[npt.NDArray[Any]]:
        """A text model's id tensors through the graph, in runs of at most TEXT_RUN_TOKENS tokens.

        A transformer's activations grow with rows x tokens (its attention with tokens squared), so 4,096
        texts of 256 tokens in one run would need gigabytes; runs of a few rows keep the peak to what one
        run needs, and onnxruntime's arena to what the largest run needed. Rows are answered alone, as the
        explainer already assumes of any model, and are split only when the graph's batch dimension and
        every requested output's first dimension are free."""
        rows, width = next(iter(feeds.values())).shape
        per_run = token_rows_per_run(width)
        if rows <= per_run or not self._rows_split(outputs):
            return self.run_graph(feeds, outputs, deadline=deadline)
        parts: list[list[npt.NDArray[Any]]] = []
        for start in range(0, rows, per_run):
            stop = min(start + per_run, rows)
            part = self.run_graph(
                {name: ids[start:stop] for name, ids in feeds.items()},
                outputs,
                deadline=deadline,
                release_arena=True,
            )
            if any(array.ndim == 0 or array.shape[0] != stop - start for array in part):
                # Not one output row per text after all: the whole batch in one run, as the graph expects.
                return self.run_graph(feeds, outputs, deadline=deadline)
            parts.append(part)
            # Each run's activations, freed to glibc's heaps, would otherwise pile up there as fragments:
            # trimmed per run, MiniLM's worst request peaked at +125 MB instead of +390 MB, for no
            # measurable time (make bench, text request memory).
            release_freed_memory()
        return [np.concatenate([part[index] for part in parts]) for index in range(len(outputs))]

    def _rows_split(self, outputs: Sequence[str]) -> bool:
        assert self.tokenizer is not None
        graph_inputs = set(self.tokenizer.preprocessing.graph_inputs())
        inputs_free = all(
            spec.shape[0] < 0 for spec in self.manifest.signature.inputs if spec.name in graph_inputs
        )
        shapes = {spec.name: spec.shape for spec in self.manifest.signature.outputs}
        return inputs_free and all(shapes[name] and shapes[name][0] < 0 for name in outputs)

    def run_graph(
        self,
        feeds: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        *,
        deadline: Deadline | None = None,
        release_arena: bool = False,
    ) -> list[npt.NDArray[Any]]:
        """Run on the graph's own inputs: for a text model, token ids rather than text.

        `release_arena`: onnxruntime's CPU arena gives back what this run grew it by, instead of keeping
        it for the next run."""
        options: ort.RunOptions | None = None
        token: int | None = None
        if deadline is not None and deadline.seconds_left() <= 0:  # loading or tokenizing used it all up
            raise self._deadline_exceeded(deadline)
        if deadline is not None or release_arena:
            options = ort.RunOptions()
        if release_arena:
            assert options is not None
            options.add_run_config_entry(ARENA_SHRINKAGE, "cpu:0")
        if deadline is not None:
            assert options is not None
            token = WATCHDOG.watch(deadline.at, options)
        try:
            results: list[npt.NDArray[Any]] = self.session.run(list(outputs), dict(feeds), options)
        except (InvalidArgument, InvalidGraph) as exc:
            # The signature check passed, so this is a value the graph itself rejects (e.g. a bad index).
            raise InvalidInput(
                f"model '{self.name}' v{self.version} rejected the inputs: {_first_line(exc)}"
            ) from None
        except Fail as exc:
            # A terminated run fails with a plain FAIL ("Exiting due to terminate flag being set to true",
            # onnxruntime 1.32); the flag itself says whether the watchdog stopped it.
            if deadline is not None and options is not None and options.terminate:
                raise self._deadline_exceeded(deadline) from None
            # Otherwise the graph failed on inputs the signature let through, which its -1s cannot rule
            # out (two free batch dimensions the graph needs equal, a broadcast that does not fit): the
            # request's mistake, answered once, not a server fault a caller or a queue would retry.
            raise InvalidInput(
                f"model '{self.name}' v{self.version} rejected the inputs: {_first_line(exc)}"
            ) from None
        finally:
            if token is not None:
                WATCHDOG.release(token)
        return results

    def _deadline_exceeded(self, deadline: Deadline) -> DeadlineExceeded:
        return DeadlineExceeded(f"model '{self.name}' v{self.version}: inference exceeded {deadline.budget}")

    def _tokenized(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        assert self.tokenizer is not None
        name = self.tokenizer.input_name
        texts = inputs.get(name)
        if texts is None:
            raise InvalidInput(
                f"inputs: model '{self.name}' expects the text input '{name}', got {len(inputs)} other inputs"
            )
        return self._as_graph_ids(self.tokenizer.encode(texts))

    def tokenize_with_tokens(self, texts: npt.NDArray[Any]) -> TokenizedTexts:
        """The graph's id tensors for `texts` (as `run` would feed them), with each text's tokens."""
        assert self.tokenizer is not None
        tokenized = self.tokenizer.encode_tokens(texts)
        return replace(tokenized, feeds=self._as_graph_ids(tokenized.feeds))

    def _as_graph_ids(self, feeds: Mapping[str, npt.NDArray[np.int64]]) -> dict[str, npt.NDArray[Any]]:
        # A graph exported with int32 ids gets int32; int64 (what tokenizers gives) passes as it is.
        datatypes = {spec.name: spec.datatype for spec in self.manifest.signature.inputs}
        return {name: ids.astype(BY_V2[datatypes[name]].numpy, copy=False) for name, ids in feeds.items()}


def token_rows_per_run(width: int) -> int:
    """Texts of `width` tokens one run takes: TEXT_RUN_TOKENS tokens, and at least one text."""
    return max(1, TEXT_RUN_TOKENS // max(width, 1))


def load_model(registry: ModelRegistry, manifest: Manifest, config: SessionConfig) -> LoadedModel:
    """Fetch and verify the graph's artifacts (and tokenizer), open the session, check its signature, and
    warm it up."""
    # The tokenizer first: it is small, and a bad one fails the load before a large session opens.
    tokenizer = (
        None if manifest.tokenizer is None else _load_tokenizer(registry, manifest, manifest.tokenizer)
    )
    session = open_verified_session(registry, manifest, config)
    model = LoadedModel(manifest, session, tuple(session.get_providers()), tokenizer)
    check_signature(manifest, session)
    if config.warmup:
        _warm_up(model)
    settle_footprint(session)
    return model


def signature_of(session: ort.InferenceSession) -> Signature:
    """The signature as the graph itself declares it: V2 datatypes, -1 for symbolic dimensions."""
    return Signature(
        inputs=[_spec(arg) for arg in session.get_inputs()],
        outputs=[_spec(arg) for arg in session.get_outputs()],
    )


def check_signature(manifest: Manifest, session: ort.InferenceSession) -> None:
    """The manifest's signature is what we validate requests against, so it must match the graph."""
    actual = signature_of(session)
    signature = manifest.signature
    for kind, declared, graph in (
        ("inputs", signature.inputs, actual.inputs),
        ("outputs", signature.outputs, actual.outputs),
    ):
        if [(s.name, s.datatype, len(s.shape)) for s in declared] != [
            (s.name, s.datatype, len(s.shape)) for s in graph
        ]:
            raise integrity_failure(
                f"model '{manifest.name}' v{manifest.version}: manifest.json {kind}: expected the graph's "
                "names, datatypes and ranks, got others",
                f"manifest {[s.model_dump() for s in declared]}, graph {[s.model_dump() for s in graph]}",
            )


def _load_tokenizer(
    registry: ModelRegistry, manifest: Manifest, preprocessing: TokenizerPreprocessing
) -> TextTokenizer:
    """The verified tokenizer, once the manifest's graph inputs are known to take what it produces:
    integer ids of shape [batch, tokens]."""
    specs = {spec.name: spec for spec in manifest.signature.inputs}
    lengths: set[int] = set()
    for name in preprocessing.graph_inputs():
        spec = specs[name]  # the manifest's own validation guarantees every one is a graph input
        if spec.datatype not in TOKEN_ID_DATATYPES or len(spec.shape) != 2:
            raise IntegrityError(
                f"model '{manifest.name}' v{manifest.version}: graph input '{name}' is fed by the tokenizer, "
                f"so expected {' or '.join(TOKEN_ID_DATATYPES)} of shape [batch, tokens], "
                f"got {spec.datatype} {spec.shape}"
            )
        lengths.add(spec.shape[1])
    # A graph exported with a fixed sequence length gets exactly that many tokens per text.
    fixed = sorted(length for length in lengths if length >= 0)
    if len(fixed) > 1:
        raise IntegrityError(
            f"model '{manifest.name}' v{manifest.version}: the tokenizer's graph inputs expect one sequence "
            f"length, got {fixed}"
        )
    data = registry.read_artifact(manifest, manifest.artifact(preprocessing.tokenizer_file))
    return TextTokenizer(data, preprocessing, sequence_length=fixed[0] if fixed else None)


def _spec(arg: Any) -> TensorSpec:
    datatype = from_onnx(arg.type)
    if datatype is None:
        raise integrity_failure(
            "graph tensor: expected a V2-compatible type, got one V2 cannot carry",
            f"tensor {arg.name!r} of type {arg.type}",
        )
    shape = [dim if isinstance(dim, int) else -1 for dim in arg.shape]
    return TensorSpec(name=arg.name, datatype=datatype.v2, shape=shape)


def _warm_up(model: LoadedModel) -> None:
    # The first run allocates arenas and picks kernels; paying that here keeps it off a user's request.
    # A text model warms up on "", which also runs the tokenizer once.
    inputs = {spec.name: zeros_like_spec(spec) for spec in model.signature.inputs}
    model.run(inputs, [spec.name for spec in model.signature.outputs])


def zeros_like_spec(spec: TensorSpec, batch: int = 1) -> npt.NDArray[Any]:
    shape = [batch if dim < 0 else dim for dim in spec.shape]
    dtype = BY_V2[spec.datatype].numpy
    if dtype == np.object_:
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=dtype)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
