"""Protocol-neutral inference: resolve a reference, get the cached model, validate, run.

No HTTP or event shapes here; adapters translate to and from `maas.infer_types`.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from maas import __version__
from maas.config import ENV_REQUEST_TIMEOUT, Settings
from maas.errors import InvalidInput
from maas.infer_types import InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata, Tensor
from maas.observability import MetricUnit, metrics
from maas.registry.manifest import Manifest
from maas.registry.references import ModelRef
from maas.registry.store import ModelRegistry, ResolvedTarget
from maas.runtime import (
    PLATFORM,
    Deadline,
    LoadBudget,
    LoadedModel,
    ModelCache,
    VersionResolver,
    check_inputs,
    check_requested_outputs,
    load_model,
    report_model_load,
    session_config,
)
from maas.signature import Signature

if TYPE_CHECKING:
    import onnxruntime as ort
    from mypy_boto3_s3 import S3Client

    from maas.explain.parameters import ExplainParameters

SERVER_NAME = "maas"
MANIFEST_CACHE_ENTRIES = 256
# "explain": POST /v2/models/{name}[/versions/{version}]/explain, this server's own extension.
EXTENSIONS = ("binary_tensor_data", "explain")
# A request parameter (or the x-maas-routing-key header) that pins a caller to one side of a canary split.
ROUTING_KEY = "routing_key"
# Left of the function's own time when it caps a request's budget: enough to answer 504 before Lambda
# stops the invocation (which would also throw the warm container, and its loaded models, away).
FUNCTION_TIMEOUT_MARGIN_SECONDS = 1.0


def choose_version(target: ResolvedTarget, routing_key: object = None) -> int:
    """The version that serves this request: the canary's share of traffic goes to the canary version.

    With a routing key the choice is a stable hash of it, so one caller always sees the same version;
    without one it is random, like Lambda's weighted alias routing."""
    canary = target.canary
    if canary is None:
        return target.version
    if routing_key is None:
        draw = random.random()
    else:
        digest = hashlib.sha256(str(routing_key).encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
    return canary.version if draw < canary.weight else target.version


class InferenceService:
    def __init__(
        self, registry: ModelRegistry, settings: Settings, *, budget: LoadBudget | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.cache = ModelCache(self._load, settings.cache_bytes)
        self.budget = budget or LoadBudget(settings)
        self._resolver = VersionResolver(
            registry.resolve_target, settings.alias_ttl_seconds, forget=self.cache.discard
        )
        self._manifests: dict[tuple[str, int], Manifest] = {}
        self._manifests_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None, s3: S3Client | None = None) -> InferenceService:
        settings = settings or Settings.from_env()
        return cls(ModelRegistry.from_settings(settings, s3), settings)

    # ---- data plane

    def infer(
        self,
        ref: ModelRef,
        request: InferenceRequest,
        *,
        remaining_ms: Callable[[], int] | None = None,
    ) -> InferenceResponse:
        """One request within its time budget; `remaining_ms` (the Lambda context's clock) caps it."""
        # The clock starts before the model is fetched: the client's, and API Gateway's, already runs.
        deadline = self.request_deadline(remaining_ms)
        model = self._routed_model(ref, request)
        return self.infer_loaded(model, request, deadline=deadline)

    def explain(
        self,
        ref: ModelRef,
        request: InferenceRequest,
        parameters: ExplainParameters,
        *,
        remaining_ms: Callable[[], int] | None = None,
    ) -> InferenceResponse:
        """Predictions with attributions, computed by perturbing the inputs, within the request's budget."""
        # The explainer (plans, baselines, perturbation batches) is imported by the first explain request
        # rather than by every cold start: a function's first request is a plain inference far more often.
        from maas.explain.batching import ExplainLimits
        from maas.explain.explainer import explain_loaded

        deadline = self.request_deadline(remaining_ms)
        model = self._routed_model(ref, request)
        started = time.perf_counter()
        response = explain_loaded(
            model, request, parameters, ExplainLimits.from_settings(self.settings), deadline=deadline
        )
        metrics.add_metric(
            name="ExplainMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
        return response

    def request_deadline(self, remaining_ms: Callable[[], int] | None = None) -> Deadline | None:
        """MAAS_REQUEST_TIMEOUT from now (0: no budget), or the function's remaining time less a margin
        when that is sooner. None: the run may take as long as it takes."""
        seconds = self.settings.request_timeout_seconds
        deadline = None
        if seconds > 0:
            deadline = Deadline.within(seconds, f"the time budget of {seconds:g} s ({ENV_REQUEST_TIMEOUT})")
        if remaining_ms is not None:
            left = remaining_ms() / 1000 - FUNCTION_TIMEOUT_MARGIN_SECONDS
            if deadline is None or left < seconds:
                deadline = Deadline.within(
                    left, f"the {round(max(left, 0), 2):g} s the function had left before its own timeout"
                )
        return deadline

    def infer_loaded(
        self, model: LoadedModel, request: InferenceRequest, *, deadline: Deadline | None = None
    ) -> InferenceResponse:
        """Run a request on a model already in hand: a batch job pins one version for all its rows.

        No deadline unless given: a batch job keeps its own, against the function's timeout."""
        # The serving signature: a text model is asked for text, never for the token ids its graph takes.
        signature = model.signature
        check_inputs(model.name, signature, request.inputs)
        output_names = check_requested_outputs(model.name, signature, request.outputs)
        started = time.perf_counter()
        arrays = model.run({t.name: t.array for t in request.inputs}, output_names, deadline=deadline)
        metrics.add_metric(
            name="InferenceMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
        datatypes = {spec.name: spec.datatype for spec in signature.outputs}
        return InferenceResponse(
            model_name=model.name,
            model_version=model.version,
            outputs=[
                Tensor(name, datatypes[name], array) for name, array in zip(output_names, arrays, strict=True)
            ],
            id=request.id,
        )

    # ---- metadata and health

    def model_metadata(self, ref: ModelRef) -> ModelMetadata:
        version = self._resolver.resolve(ref).version
        manifest = self._manifest(ref.name, version)
        return ModelMetadata(
            name=ref.name,
            versions=self.registry.versions(ref.name),
            version=version,
            platform=PLATFORM,
            inputs=list(manifest.serving_signature.inputs),
            outputs=list(manifest.serving_signature.outputs),
        )

    def select_version(self, ref: ModelRef, routing_key: object = None) -> int:
        """The version that serves one request for `ref`, honouring an alias's canary split."""
        return choose_version(self._resolver.resolve(ref), routing_key)

    def signature(self, ref: ModelRef) -> tuple[int, Signature]:
        """The resolved version and the signature clients use, from the manifest alone (no model load)."""
        version = self._resolver.resolve(ref).version
        return version, self._manifest(ref.name, version).serving_signature

    def model_index(self) -> dict[str, list[int]]:
        return self.registry.model_index()

    def model_ready(self, ref: ModelRef) -> int:
        """Ready means loaded and warmed up; asking loads it, which doubles as an explicit warm-up.

        Returns the version that is ready."""
        return self._model(ref).version

    def server_ready(self) -> bool:
        self.registry.check_reachable()
        return True

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS))

    # ---- internals

    def _routed_model(self, ref: ModelRef, request: InferenceRequest) -> LoadedModel:
        """The version that serves `request`, loaded: an alias's canary split goes by its routing key."""
        return self.cache.get(ref.name, self.select_version(ref, request.parameters.get(ROUTING_KEY)))

    def _model(self, ref: ModelRef) -> LoadedModel:
        version = self._resolver.resolve(ref).version
        return self.cache.get(ref.name, version)

    def _manifest(self, name: str, version: int) -> Manifest:
        loaded = self.cache.peek(name, version)
        if loaded is not None:
            return loaded.manifest
        key = (name, version)
        with self._manifests_lock:
            cached = self._manifests.get(key)
        if cached is not None:
            return cached
        manifest = self.registry.manifest(name, version)
        with self._manifests_lock:
            if len(self._manifests) >= MANIFEST_CACHE_ENTRIES:
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[key] = manifest
        return manifest

    def _load(self, name: str, version: int) -> LoadedModel:
        started = time.perf_counter()
        manifest = self._manifest(name, version)
        if manifest.generation is not None:
            # Its graph takes a KV cache the V1/V2 tensor routes cannot feed: one step would fail inside
            # onnxruntime with a message about GroupQueryAttention instead of one about the route.
            raise InvalidInput(
                f"model: expected a model the infer routes run, got '{name}' v{version}, a text generator: "
                f"use POST /v2/models/{name}/generate or POST /openai/v1/chat/completions"
            )
        # Both budgets before any download: a refusal costs a manifest read, never a /tmp filled half way.
        with self.budget.admitted(manifest, session_config(self.settings), self.cache, _session_of) as config:
            model = load_model(self.registry, manifest, config)
        report_model_load(manifest, model.session, started)
        return model


def _session_of(model: LoadedModel) -> ort.InferenceSession:
    return model.session
