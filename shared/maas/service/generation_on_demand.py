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

    from maas.config import Settings
    from maas.registry.store import ModelRegistry
    from maas.service.event_completions import EventCompletions

# What makes a body a text-generation request: a chat completion's messages, a completion's prompt.
CHAT_FIELD = "messages"
COMPLETION_FIELD = "prompt"


def asks_for_text(body: Mapping[str, Any]) -> bool:
    """Whether a body is a chat completion or completion request (or claims to be both)."""
    return CHAT_FIELD in body or COMPLETION_FIELD in body


class EventCompletionsOnDemand:
    """Builds the completion service once, on first call, over the inference service's registry client
    and settings; every later call returns the same one, so its loaded generators stay warm."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._built: EventCompletions | None = None
        self._lock = threading.Lock()

    def __call__(self) -> EventCompletions:
        with self._lock:
            if self._built is None:
                from maas.generation.loader import GeneratorLoader
                from maas.service.completions import CompletionService
                from maas.service.event_completions import EventCompletions

                loader = GeneratorLoader(self.registry, self.settings)
                self._built = EventCompletions(CompletionService(self.registry, self.settings, loader))
            return self._built
