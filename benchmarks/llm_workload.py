"""What every LLM case sends and what it measures against: one chat prompt SmolLM2 answers at length (no
end-of-sequence within MAX_TOKENS at any precision, checked), temperature 0, and the raw onnxruntime loop.

The raw loop is maas.generation.reference.greedy_reference with `shared_buffer=True`: IO binding with one
preallocated KV buffer per layer bound as both past and present, nothing copied between steps. It is the
stronger of the reference's two loops, so a served path measured against it is held to the best plain
onnxruntime does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
from tests.support.events import json_event
from tokenizers import Tokenizer

from maas.generation.chat_template import ChatTemplate
from maas.generation.reference import ReferenceRun, greedy_reference
from maas.registry import Generation, Manifest

CHAT_PATH = "/openai/v1/chat/completions"
MESSAGES: list[dict[str, Any]] = [
    {
        "role": "user",
        "content": "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    }
]
MAX_TOKENS = 64
SPINNING_OFF = ("session.intra_op.allow_spinning", "0")
RAW_LOOP_NOTE = (
    "raw loop: maas.generation.reference.greedy_reference(shared_buffer=True): IO binding, one KV buffer per "
    "layer bound as past and present (the stronger of its two loops), argmax each step"
)
OK = 200


def chat_body(model: str, max_tokens: int = MAX_TOKENS, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def chat_event(model: str, max_tokens: int = MAX_TOKENS, *, stream: bool = False) -> dict[str, Any]:
    """The HTTP API v2 event API Gateway sends for a chat completion."""
    return json_event("POST", CHAT_PATH, chat_body(model, max_tokens, stream=stream))


def generation_of(manifest: Manifest) -> Generation:
    if manifest.generation is None:
        raise ValueError(f"{manifest.name} v{manifest.version}: expected a text generator")
    return manifest.generation


def prompt_ids(folder: Path, generation: Generation) -> list[int]:
    """MESSAGES as the version's chat template renders them and its tokenizer reads them, as served."""
    assert generation.chat_template_file is not None
    template = ChatTemplate(
        (folder / generation.chat_template_file).read_text(),
        bos_token=generation.bos_token,
        eos_token=generation.eos_token,
        what="the benchmark's chat template",
    )
    text = template.render(MESSAGES, add_generation_prompt=True)
    tokenizer = Tokenizer.from_file(str(folder / generation.tokenizer_file))
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def raw_session(folder: Path, threads: int) -> ort.InferenceSession:
    """The folder's graph opened as the generate function opens it: `threads` intra-op threads, no
    spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry(*SPINNING_OFF)
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


def raw_greedy(
    folder: Path,
    session: ort.InferenceSession,
    ids: Sequence[int],
    generation: Generation,
    max_tokens: int = MAX_TOKENS,
) -> ReferenceRun:
    return greedy_reference(
        folder,
        ids,
        max_tokens,
        generation=generation,
        eos_token_ids=generation.eos_token_ids,
        shared_buffer=True,
        session=session,
    )


def sse_documents(body: bytes) -> list[dict[str, Any]]:
    """The JSON documents of an event stream's `data:` events, the closing [DONE] left out."""
    documents = []
    for event in body.split(b"\n\n"):
        data = event.strip().removeprefix(b"data: ")
        if data and data != b"[DONE]":
            documents.append(json.loads(data))
    return documents


def has_content(documents: Iterable[dict[str, Any]]) -> bool:
    """Whether any chat chunk among `documents` carries generated text."""
    return any(choice.get("delta", {}).get("content") for d in documents for choice in d.get("choices", []))


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: this machine is shared, so a figure needs its load."""
    return [round(load, 2) for load in os.getloadavg()]
