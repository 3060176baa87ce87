"""Protocol-neutral text generation: resolve a model reference, load the generator, check the request, and
hand back a run that answers whole or as chunks.

Everything that can refuse a request does so here, before the first token and before the first byte of a
stream: the checks that need no model (maas.service.completions_limits) before the registry is asked, then
the ones that need it (is it a text generator, does the prompt fit its context). A run then only generates.

Model references are maas's own (name, name@alias, name/versions/<n>) plus name:version and name:alias, the
form OpenAI clients write model tags in; aliases, canary splits and their TTL resolve exactly as for
inference (maas.runtime.VersionResolver, maas.service.inference.choose_version). The canary side is chosen
by the routing key: the x-maas-routing-key header, else the request's `user`, else at random.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from maas.config import Settings
from maas.errors import InvalidInput, NotFound
from maas.generation.loader import GeneratorLoader
from maas.generation.text_generator import TextGenerator
from maas.protocol.generate_types import GenerateParameters, GenerateRequest
from maas.protocol.openai_types import ChatCompletionRequest, CompletionRequest, ModelList, ModelObject
from maas.registry.manifest import Manifest
from maas.registry.references import ModelRef, describe_name, parse_ref, parse_version_selector
from maas.registry.store import ModelRegistry
from maas.runtime import VersionResolver
from maas.service.completions_limits import (
    RequestedSampling,
    chat_messages,
    check_chat_request,
    check_completion_request,
    check_sampling,
    check_text,
    completion_budget,
    completion_prompts,
)
from maas.service.completions_openai import ChatRun, CompletionRun
from maas.service.completions_runs import Choice, GenerationRun, Prompt, ServedVersion
from maas.service.completions_triton import GenerateRun
from maas.service.inference import FUNCTION_TIMEOUT_MARGIN_SECONDS, MANIFEST_CACHE_ENTRIES, choose_version

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

OWNED_BY = "maas"
MODEL_REFERENCE_FORMS = "name, name@alias, name:version or name/versions/<n>"


def parse_model_id(text: str) -> ModelRef:
    """A request's `model`: any maas reference, or name:version / name:alias as OpenAI clients write tags."""
    try:
        name, colon, selector = text.partition(":")
        if colon and selector and "@" not in name and "/" not in name:
            return parse_version_selector(name, selector)
        if not colon:
            return parse_ref(text)
    except InvalidInput:
        pass
    raise InvalidInput(
        f"model: expected a model reference ({MODEL_REFERENCE_FORMS}), got {describe_name(text)}"
    )


def generation_deadline(settings: Settings, remaining_ms: Callable[[], int] | None) -> float | None:
    """When decoding must stop (time.monotonic()): MAAS_GENERATION_TIMEOUT from now, or the function's
    remaining time less a margin for the answer's tail when that is sooner. None: no budget."""
    now = time.monotonic()
    candidates = []
    if settings.generation_timeout_seconds > 0:
        candidates.append(now + settings.generation_timeout_seconds)
    if remaining_ms is not None:
        candidates.append(now + remaining_ms() / 1000 - FUNCTION_TIMEOUT_MARGIN_SECONDS)
    return min(candidates, default=None)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the transport knows about a request besides its body."""

    routing_key: str | None = None
    # The Lambda context's clock (milliseconds left), when there is one.
    remaining_ms: Callable[[], int] | None = None


class CompletionService:
    def __init__(self, registry: ModelRegistry, settings: Settings, loader: GeneratorLoader) -> None:
        self.registry = registry
        self.settings = settings
        self.loader = loader
        self._resolver = VersionResolver(
            registry.resolve_target, settings.alias_ttl_seconds, forget=loader.cache.discard
        )
        # Versions are immutable, so a manifest read once is right for as long as the process lives.
        self._manifest: Callable[[str, int], Manifest] = functools.lru_cache(maxsize=MANIFEST_CACHE_ENTRIES)(
            registry.manifest
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None, s3: S3Client | None = None) -> CompletionService:
        settings = settings or Settings.from_env()
        registry = ModelRegistry.from_settings(settings, s3)
        return cls(registry, settings, GeneratorLoader(registry, settings))

    # ---- OpenAI

    def chat(self, request: ChatCompletionRequest, context: RequestContext | None = None) -> ChatRun:
        arrived = _Arrival.now(self.settings, context)
        sampling = check_chat_request(request, self.settings.max_choices)
        messages = chat_messages(request.messages)
        run = self._prepare(
            arrived,
            _Asked("chat", parse_model_id(request.model), request.user, bool(request.stream)),
            sampling,
            lambda generator: [(generator.render_chat(messages), "messages")],
        )
        return ChatRun(run, logprobs=bool(request.logprobs), include_usage=_include_usage(request))

    def complete(self, request: CompletionRequest, context: RequestContext | None = None) -> CompletionRun:
        arrived = _Arrival.now(self.settings, context)
        sampling = check_completion_request(request, self.settings.max_choices)
        texts = completion_prompts(request.prompt)
        fields = (
            ["prompt"] if isinstance(request.prompt, str) else [f"prompt[{i}]" for i in range(len(texts))]
        )
        run = self._prepare(
            arrived,
            _Asked("completions", parse_model_id(request.model), request.user, bool(request.stream)),
            sampling,
            lambda _: list(zip(texts, fields, strict=True)),
        )
        return CompletionRun(
            run,
            logprobs=request.logprobs is not None,
            echo=bool(request.echo),
            include_usage=_include_usage(request),
        )

    def models(self) -> ModelList:
        """The text-generation models, by name (each answers as its default alias does)."""
        listed = []
        for name, versions in sorted(self.registry.model_index().items()):
            if not versions:
                continue
            manifest = self._manifest(name, max(versions))
            if manifest.generation is not None:
                listed.append(_model_object(name, manifest))
        return ModelList(data=listed)

    def model(self, model_id: str) -> ModelObject:
        """One model as OpenAI's retrieve answers it, under the id it was asked for."""
        ref = parse_model_id(model_id)
        version = self._resolver.resolve(ref).version
        manifest = self._manifest(ref.name, version)
        if manifest.generation is None:
            raise NotFound(f"model {describe_name(model_id)}: not a text-generation model")
        return _model_object(model_id, manifest)

    # ---- Triton's generate extension

    def generate(
        self, ref: ModelRef, request: GenerateRequest, *, stream: bool, context: RequestContext | None = None
    ) -> GenerateRun:
        arrived = _Arrival.now(self.settings, context)
        parameters = request.parameters or GenerateParameters()
        if parameters.stream and not stream:
            raise InvalidInput(
                "parameters.stream: expected false or none here; POST .../generate_stream streams"
            )
        try:
            sampling = check_sampling(parameters, max_choices=1, max_tokens=parameters.max_tokens)
        except InvalidInput as exc:
            raise InvalidInput(f"parameters.{exc.message}") from None
        check_text("text_input", request.text_input)
        run = self._prepare(
            arrived,
            _Asked("generate", ref, parameters.routing_key, stream),
            sampling,
            lambda _: [(request.text_input, "text_input")],
        )
        return GenerateRun(run, request.id)

    # ---- internals

    def _prepare(
        self,
        arrived: _Arrival,
        asked: _Asked,
        sampling: RequestedSampling,
        prompts: Callable[[TextGenerator], list[tuple[str, str]]],
    ) -> GenerationRun:
        """The run: the version chosen and loaded, each prompt (text, the field it came from) tokenized
        and checked against the context, n choices per prompt in order, each with its own seed."""
        served, generator = self._generator(asked.ref, arrived.context.routing_key or asked.routing_key)
        generation = generator.manifest.generation
        assert generation is not None, "the service loads text generators only"
        choices: list[Choice] = []
        for text, field in prompts(generator):
            prompt = Prompt(text, tuple(generator.encode(text)))
            max_tokens = completion_budget(
                prompt_tokens=len(prompt.token_ids),
                requested=sampling.max_tokens,
                default=generation.defaults.max_tokens,
                context_length=generator.context_length,
                prompt_field=field,
            )
            for _ in range(sampling.n):
                index = len(choices)
                choices.append(
                    Choice(index, prompt, sampling.for_choice(index, generation.defaults, max_tokens))
                )
        return GenerationRun(
            generator,
            served,
            tuple(choices),
            api=asked.api,
            stream=asked.stream,
            deadline=arrived.deadline,
            started=arrived.started,
        )

    def _generator(self, ref: ModelRef, routing_key: str | None) -> tuple[ServedVersion, TextGenerator]:
        version = choose_version(self._resolver.resolve(ref), routing_key)
        manifest = self._manifest(ref.name, version)
        if manifest.generation is None:
            raise InvalidInput(
                f"model: expected a text-generation model, got '{ref.name}' version {version}, whose task is "
                f"{manifest.task or 'not stated'}"
            )
        return ServedVersion(ref.name, version), self.loader.get(ref.name, version)


@dataclass(frozen=True, slots=True)
class _Arrival:
    """When a request arrived, and so when its generation must end."""

    context: RequestContext
    started: float
    deadline: float | None

    @classmethod
    def now(cls, settings: Settings, context: RequestContext | None) -> _Arrival:
        # The clock starts before the model is fetched: the client's, and the gateway's, already runs.
        context = context or RequestContext()
        return cls(context, time.perf_counter(), generation_deadline(settings, context.remaining_ms))


@dataclass(frozen=True, slots=True)
class _Asked:
    """What a request asks of the service besides its prompts and sampling."""

    api: str
    ref: ModelRef
    # The body's own routing key (OpenAI's user, a generate parameter); the transport's header wins.
    routing_key: str | None
    stream: bool


def _include_usage(request: ChatCompletionRequest | CompletionRequest) -> bool:
    options = request.stream_options
    return bool(request.stream and options is not None and options.include_usage)


def _model_object(model_id: str, manifest: Manifest) -> ModelObject:
    return ModelObject(id=model_id, created=_unix_time(manifest.created_at), owned_by=OWNED_BY)


def _unix_time(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return 0
