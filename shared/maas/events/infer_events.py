"""The infer function's events that are not HTTP requests: direct invokes and the warm-up schedule.

    {"model": ..., "inputs": [...]}        -> direct invoke (Step Functions, SDKs): the V2 response as JSON
    EventBridge "Scheduled Event"          -> warm-up: load MAAS_WARM_MODELS' versions unless already loaded

A direct invoke's client mistake is raised as the MaasError it is; the Lambda edge (maas.apps.edge) answers
it as {"error", "status"} so a state machine can branch on it, and raises a transient failure so the
caller's retry policy applies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.errors import MaasError
from maas.events.requests import decode_event_request
from maas.observability import logger
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import response_body
from maas.registry.references import parse_ref
from maas.service.inference import InferenceService

SCHEDULED_EVENT = "Scheduled Event"


def is_warm_up(event: Mapping[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == SCHEDULED_EVENT


def is_direct_invoke(event: Mapping[str, Any]) -> bool:
    return "model" in event


class InferEvents:
    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.limits = TensorLimits.from_settings(service.settings)

    def invoke(self, event: Mapping[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        remaining_ms = None if context is None else context.get_remaining_time_in_millis
        response = decode_event_request(dict(event), self.limits).answer(self.service, remaining_ms)
        return response_body(response).model_dump(mode="json", exclude_none=True)

    def warm_up(self) -> dict[str, Any]:
        """Load each configured model's current version; one already in the cache costs one lookup."""
        loaded: list[str] = []
        already_warm: list[str] = []
        failed: dict[str, str] = {}
        started = time.perf_counter()
        for text in self.service.settings.warm_models:
            try:
                ref = parse_ref(text)
                version = self.service.select_version(ref)
                if self.service.cache.peek(ref.name, version) is not None:
                    already_warm.append(f"{ref.name}/versions/{version}")
                    continue
                self.service.cache.get(ref.name, version)
                loaded.append(f"{ref.name}/versions/{version}")
            except MaasError as exc:
                failed[text] = exc.message
        summary = {"loaded": loaded, "already_warm": already_warm, "failed": failed}
        logger.info("warm-up", extra={**summary, "ms": round((time.perf_counter() - started) * 1000, 1)})
        return summary
