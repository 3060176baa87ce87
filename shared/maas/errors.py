"""One error root that carries its HTTP status; every edge maps it exactly once.

Messages name the field, what was expected and what arrived. They never echo payload values.
"""

from __future__ import annotations

from typing import Any


class MaasError(Exception):
    """Root of every error the domain raises on purpose. Maps to HTTP `status`.

    A subclass states its status where it is named, `class NotFound(MaasError, status=404)`; one that
    states none keeps its parent's.
    """

    status: int = 500

    def __init_subclass__(cls, *, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class InvalidInput(MaasError, status=400):
    """The client sent something malformed or inconsistent with the model. HTTP 400."""


class NotFound(MaasError, status=404):
    """The model, version, alias or route does not exist. HTTP 404."""


class MethodNotAllowed(MaasError, status=405):
    """The path exists but not for this HTTP method. HTTP 405, with the methods it does allow."""

    def __init__(self, message: str, *, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class PayloadTooLarge(MaasError, status=413):
    """The request exceeds a configured size limit. HTTP 413."""


class UnsupportedMediaType(MaasError, status=415):
    """The request's content type is not one we decode. HTTP 415."""


class Unavailable(MaasError, status=503):
    """A dependency (storage, execution provider) cannot serve right now. HTTP 503."""


class ModelTooLarge(MaasError, status=503):
    """A model does not fit the function's memory even with every other cached model evicted. HTTP 503, as
    for any capacity the server lacks; unlike Unavailable it is not transient (a fresh container has the same
    memory), so event sources answer it rather than redeliver it until the dead-letter queue."""


class InsufficientStorage(MaasError, status=507):
    """A model's files do not fit the function's temp space (its ephemeral storage). HTTP 507: no retry helps
    until the operator gives the function more, so event sources answer it rather than redeliver it."""


class IntegrityError(MaasError, status=500):
    """A stored document or artifact is not what the registry wrote (checksum, size, signature, schema).
    HTTP 500: never the client's fault.

    Callers, unauthenticated ones included, see `message`: it names what failed (model, version, which
    document) and never quotes stored content or a library's text. That goes in `detail`, for the logs
    only (maas.registry.integrity.integrity_failure logs it).
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ConfigurationError(MaasError, status=500):
    """The deployment's configuration is invalid (bad env var value). HTTP 500."""


class DeadlineExceeded(MaasError, status=504):
    """The request used up its time budget (MAAS_REQUEST_TIMEOUT) before the model answered. HTTP 504."""
