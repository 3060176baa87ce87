"""The event paths' completion service, built when the first chat or prompt arrives.

A batch or async function answers V2 requests too, and most of its containers never meet a text generator:
importing the generation stack (tokenizers, jinja2, the OpenAI types: about 0.15 s, a tenth of the
function's import) and making its loader wait for the first body that asks for text. Nothing here imports
them, so the functions' cold start stays what it was.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    import onnxruntime as ort

    from maas.config import Settings
    from maas.generation.text_generator import TextGenerator
    from maas.registry.store import ModelRegistry
    from maas.runtime.loaded_model import LoadedModel
    from maas.service.event_completions import EventCompletions
    from maas.service.inference import InferenceService

# What makes a body a text-generation request: a chat completion's messages, a completion's prompt.
CHAT_FIELD = "messages"
COMPLETION_FIELD = "prompt"


def asks_for_text(body: Mapping[str, Any]) -> bool:
    """Whether a body is a chat completion or completion request (or claims to be both)."""
    return CHAT_FIELD in body or COMPLETION_FIELD in body


class EventCompletionsOnDemand:
    """Builds the completion service once, on first call, over the inference service's registry client
    and settings; every later call returns the same one, so its loaded generators stay warm."""

    def __init__(
        self, registry: ModelRegistry, settings: Settings, *, models: InferenceService | None = None
    ) -> None:
        """`models`: the function's inference service, whose cache shares the process with the
        generators'; each cache's loads may then evict the other's models to make room."""
        self.registry = registry
        self.settings = settings
        self.models = models
        self._built: EventCompletions | None = None
        self._lock = threading.Lock()

    def __call__(self) -> EventCompletions:
        with self._lock:
            if self._built is None:
                from maas.generation.loader import GeneratorLoader
                from maas.runtime.budgets import LoadBudget
                from maas.service.completions import CompletionService
                from maas.service.event_completions import EventCompletions

                if self.models is None:
                    loader = GeneratorLoader(self.registry, self.settings)
                else:
                    # One process, one memory and one /tmp: otherwise a generator could be refused for
                    # memory that a cached model, which evicting would free, holds (and the other way).
                    budget = LoadBudget(self.settings, self.models.budget.readings)
                    loader = GeneratorLoader(self.registry, self.settings, budget=budget)
                    budget.share_with(self.models.cache, _session_of_model)
                    self.models.budget.share_with(loader.cache, _session_of_generator)
                self._built = EventCompletions(CompletionService(self.registry, self.settings, loader))
            return self._built


def _session_of_model(model: LoadedModel) -> ort.InferenceSession:
    return model.session


def _session_of_generator(generator: TextGenerator) -> ort.InferenceSession:
    return generator.decoder.session
