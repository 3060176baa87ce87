"""S3 requests of the embedded store that change state: one at a time, each saved before it is answered.

S3 checks a conditional write (If-None-Match, If-Match, a multipart completion with If-None-Match, a
conditional DELETE) and applies it as one step; moto 5.2.6 checks, then writes, with nothing between, so
two racing writers could both pass. One process-wide lock around every mutating S3 request gives the
served store S3's semantics (the registry's compare-and-swap relies on it). Inside the same lock, when a
data folder is kept (maas.local.store_state), the new state is written before the response leaves, so a
client never hears "done" for something a crash would lose; when the request queued a bucket notification
(a job input, say), the queues are written too, or a crash right after the reply would lose the message
and the job would never run. Other SQS traffic is saved by the store's periodic saver.

UploadPart stays outside the lock: parts of an upload in progress are neither conditional nor kept, and
serialising them would make a parallel multipart upload one part at a time.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maas.local.store_state import StoreState

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_mutation_lock = threading.Lock()
_install_lock = threading.Lock()
_installed = threading.Event()


class _SentMessages:
    """How many SQS messages this process's moto has queued: a request that changed it changed the queues."""

    count = 0


class _Kept:
    """Where S3 mutations are saved: one store per process, as moto keeps one state per process."""

    state: StoreState | None = None


def install_serialized_mutations() -> None:
    """Patch moto's S3 request entry points (process-wide, once)."""
    with _install_lock:
        if _installed.is_set():
            return
        from moto.s3.responses import S3Response
        from moto.sqs.models import SQSBackend

        for name in ("bucket_response", "key_response"):
            setattr(S3Response, name, _serialized(vars(S3Response)[name]))
        setattr(SQSBackend, "send_message", _counted(vars(SQSBackend)["send_message"]))  # noqa: B010
        _installed.set()


def keep_state_in(state: StoreState | None) -> None:
    """Save every later S3 mutation into `state` (None: keep nothing, the in-memory store)."""
    with _mutation_lock:
        _Kept.state = state


def is_mutation(method: str, full_url: str) -> bool:
    """Whether a request changes what the store keeps: not a read, not a part of an upload in progress."""
    if method.upper() in READ_METHODS:
        return False
    query = full_url.partition("?")[2]
    return not (method.upper() == "PUT" and "uploadId=" in query and "partNumber=" in query)


def _serialized(stock: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(stock)
    def respond(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        if not is_mutation(str(request.method), full_url):
            return stock(self, request, full_url, headers)
        with _mutation_lock:
            sent_before = _SentMessages.count
            response = stock(self, request, full_url, headers)
            if _Kept.state is not None:
                _Kept.state.save_s3()
                if _SentMessages.count != sent_before:
                    _Kept.state.save_sqs()
            return response

    return respond


def _counted(stock: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(stock)
    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        message = stock(self, *args, **kwargs)
        _SentMessages.count += 1  # two racing increments may count one, but the count still moves
        return message

    return send_message
