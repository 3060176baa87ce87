"""The one Lambda edge every function's app is served through: correlation id, error mapping, metrics.

Each invocation gets a log correlation id (an HTTP request's id, a direct invoke's "id"; an SQS record's
message id is set per record by its adapter), a ColdStart count on the container's first, and an
Errors<status> count for an answer that reports one. Its EMF metrics are flushed whatever happens.

HTTP errors are answered inside the resolver, as responses. A function whose callers read errors as data
(the infer function's direct invokes: a state machine branches on them) sets `answers_client_errors`, and a
MaasError that reaches its edge is answered as {"error", "status"}; an Unavailable is still raised there, so
the caller's retry policy applies. Everywhere else a MaasError that reaches the edge is raised: an SQS
function that answered it would tell Lambda the whole batch succeeded, and its messages would be deleted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.errors import MaasError, Unavailable
from maas.observability import MetricUnit, logger, metrics


class Edge(ABC):
    """A function's app: `resolve` is the Lambda handler's one call, the edge; `answer` is the function's own
    work. The infer function, which sends each kind of event to its own adapter, subclasses it; the others
    serve their one adapter through BehindEdge."""

    # Per app, not per process: tests build a fresh app per simulated container.
    _cold_start = True
    # Answer a client mistake that reaches the edge as {"error", "status"} instead of raising it.
    answers_client_errors = False

    @abstractmethod
    def answer(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]: ...

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        logger.set_correlation_id(correlation_id(event))
        if self._cold_start:
            self._cold_start = False
            metrics.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
        try:
            try:
                answer = self.answer(event, context)
            except Unavailable:
                raise
            except MaasError as exc:
                if not self.answers_client_errors:
                    raise
                answer = {"error": exc.message, "status": exc.status}
            status = answered_status(answer)
            if status is not None and status >= 400:
                metrics.add_metric(name=f"Errors{status}", unit=MetricUnit.Count, value=1)
            return answer
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()


class Resolver(Protocol):
    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]: ...


AdapterT = TypeVar("AdapterT", bound=Resolver)


class BehindEdge(Edge, Generic[AdapterT]):
    """A function whose one adapter answers every event it gets (HTTP routes, an SQS source)."""

    def __init__(self, adapter: AdapterT) -> None:
        self.adapter = adapter

    def answer(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        return self.adapter.resolve(event, context)


def correlation_id(event: Mapping[str, Any]) -> str | None:
    request_context = event.get("requestContext")
    if isinstance(request_context, Mapping):
        request_id = request_context.get("requestId")
        return request_id if isinstance(request_id, str) else None
    given = event.get("id")
    return given if isinstance(given, str) else None


def answered_status(answer: Mapping[str, Any]) -> int | None:
    """An HTTP response's statusCode, or an error answer's status; None for answers that carry none
    (an inference, a partial batch response, a warm-up summary)."""
    if "statusCode" in answer:
        return int(str(answer["statusCode"]))
    status = answer.get("status") if "error" in answer else None
    return status if isinstance(status, int) else None
