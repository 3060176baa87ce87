"""The protocol-neutral data plane: inference, metadata and health over the registry and runtime."""

from __future__ import annotations

from maas.service.inference import InferenceService

__all__ = ["InferenceService"]
