"""The infer function's front door: HTTP requests, direct invokes and the warm-up schedule.

    API Gateway / Function URL event       -> the V2/V1 HTTP app
    {"model": ..., "inputs": [...]}        -> direct invoke (Step Functions, SDKs): the V2 response as JSON
    EventBridge "Scheduled Event"          -> warm-up: load MAAS_WARM_MODELS' versions unless already loaded

A direct invoke's client mistake returns {"error", "status"} rather than raising, so a state machine can
branch on it; a transient failure raises, so the caller's retry policy applies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.api.http_app import HttpApp, build_http_app
from maas.errors import MaasError, Unavailable
from maas.events.requests import decode_event_request
from maas.observability import MetricUnit, logger, metrics
from maas.protocol.tensor_codec import TensorLimits
from maas.protocol.v2_codec import response_body
from maas.registry.references import parse_ref

UNSUPPORTED_EVENT = (
    'event: expected an API Gateway or Function URL request, a direct invoke {"model", "inputs"} '
    "or an EventBridge scheduled warm-up"
)
SCHEDULED_EVENT = "Scheduled Event"


class InferFunctionApp:
    def __init__(self, http: HttpApp) -> None:
        self.http = http
        self.service = http.service
        self.limits = TensorLimits.from_settings(self.service.settings)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        if "requestContext" in event or "httpMethod" in event:
            return self.http.resolve(event, context)
        if event.get("source") == "aws.events" and event.get("detail-type") == SCHEDULED_EVENT:
            return self.warm_up()
        if "model" in event:
            return self.invoke(event, context)
        return {"error": UNSUPPORTED_EVENT, "status": 400}

    def invoke(self, event: Mapping[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        logger.set_correlation_id(event.get("id") if isinstance(event.get("id"), str) else None)
        try:
            remaining_ms = None if context is None else context.get_remaining_time_in_millis
            response = decode_event_request(dict(event), self.limits).answer(self.service, remaining_ms)
        except Unavailable:
            raise
        except MaasError as exc:
            metrics.add_metric(name=f"Errors{exc.status}", unit=MetricUnit.Count, value=1)
            return {"error": exc.message, "status": exc.status}
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()
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


def build_infer_app() -> InferFunctionApp:
    return InferFunctionApp(build_http_app())
