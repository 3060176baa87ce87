"""Integrity failures: a fixed message for callers, the stored content that explains it for the logs.

A corrupt document's parse error quotes the document (pydantic's `input_value=...`, a tokenizer's text, a
key named in a signature file) and links to library docs. The caller of an inference endpoint may be
anonymous and did nothing wrong, so it gets only what failed; the operator finds the why in the logs.
"""

from __future__ import annotations

from maas.errors import IntegrityError

# A parse error can quote a whole document; the log line needs the start of it, not all of it.
MAX_DETAIL_CHARS = 2000


def integrity_failure(message: str, detail: str) -> IntegrityError:
    """Log `detail` with `message`, and return the IntegrityError whose public text is `message` alone.

    `message` names the model, version and document that failed and must not quote any of them."""
    # Imported here: the CLI and the registry's readers import this module, and only a failure needs a logger.
    from maas.observability import logger

    shown = (
        detail if len(detail) <= MAX_DETAIL_CHARS else f"{detail[:MAX_DETAIL_CHARS]}... ({len(detail)} chars)"
    )
    logger.error("integrity check failed", extra={"error": message, "detail": shown})
    return IntegrityError(message, detail=shown)
