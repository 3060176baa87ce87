"""The one Lambda edge: what every function's invocation gets whatever its adapter does (a correlation id, a
ColdStart once, Errors<status>, metrics flushed) and which errors it answers and which it raises."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.edge import BehindEdge, Edge
from maas.errors import InvalidInput, MaasError, NotFound, Unavailable
from maas.observability import logger, metrics

HTTP_EVENT = {"requestContext": {"requestId": "req-1"}, "rawPath": "/v2"}
DIRECT_EVENT = {"id": "direct-7", "model": "m", "inputs": []}
SQS_EVENT = {"Records": [{"messageId": "msg-1", "eventSource": "aws:sqs"}]}


@pytest.fixture(autouse=True)
def no_metrics_left_over() -> Iterator[None]:
    """Powertools keeps unflushed metrics process-wide: an earlier test's would be flushed with ours."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


class Adapter:
    """What an adapter returns or raises, decided by the test."""

    def __init__(self, answer: Callable[[], dict[str, Any]]) -> None:
        self._answer = answer
        self.calls = 0

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        self.calls += 1
        return self._answer()


class AnsweringEdge(BehindEdge[Adapter]):
    """An edge whose callers read client mistakes as data, as the infer function's direct invokes do."""

    answers_client_errors = True


def raising(error: Exception) -> Callable[[], dict[str, Any]]:
    def answer() -> dict[str, Any]:
        raise error

    return answer


def emitted_metrics(out: str) -> list[str]:
    """The metric names of every EMF document printed, in order."""
    documents = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    return [
        metric["Name"]
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    ]


def test_a_cold_start_is_counted_once_per_app(capsys: pytest.CaptureFixture[str]) -> None:
    edge = BehindEdge(Adapter(lambda: {"statusCode": 200}))

    edge.resolve(HTTP_EVENT, None)
    first = emitted_metrics(capsys.readouterr().out)
    edge.resolve(HTTP_EVENT, None)
    second = emitted_metrics(capsys.readouterr().out)

    assert first == ["ColdStart"]
    assert second == []


@pytest.mark.parametrize(
    ("answer", "errors_metric"),
    [
        ({"statusCode": 200}, None),
        ({"statusCode": 404}, "Errors404"),
        ({"statusCode": "503"}, "Errors503"),
        ({"error": "bad", "status": 400}, "Errors400"),
        ({"batchItemFailures": []}, None),
        ({"outputs": [], "status": 413}, None),  # a status without an error is not an error answer
    ],
    ids=["ok", "http-404", "http-status-as-text", "error-answer", "sqs-batch", "status-without-error"],
)
def test_an_answer_that_reports_an_error_status_is_counted(
    capsys: pytest.CaptureFixture[str], answer: dict[str, Any], errors_metric: str | None
) -> None:
    edge = BehindEdge(Adapter(lambda: answer))

    assert edge.resolve(HTTP_EVENT, None) == answer

    expected = ["ColdStart"] + ([errors_metric] if errors_metric else [])
    assert emitted_metrics(capsys.readouterr().out) == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [(HTTP_EVENT, "req-1"), (DIRECT_EVENT, "direct-7"), (SQS_EVENT, None), ({"id": 7}, None)],
    ids=["http-request-id", "direct-invoke-id", "sqs-sets-its-own-per-record", "non-string-id"],
)
def test_the_correlation_id_is_the_events_own(event: dict[str, Any], expected: str | None) -> None:
    seen: list[str | None] = []

    def answer() -> dict[str, Any]:
        seen.append(logger.get_correlation_id())
        return {"statusCode": 200}

    logger.set_correlation_id("left-over-from-an-earlier-invocation")
    edge = BehindEdge(Adapter(answer))

    edge.resolve(event, None)

    assert seen == [expected]


@pytest.mark.parametrize("error", [InvalidInput("inputs: expected a list"), NotFound("model 'x': not found")])
def test_an_edge_whose_callers_read_errors_answers_a_client_mistake(
    capsys: pytest.CaptureFixture[str], error: MaasError
) -> None:
    edge = AnsweringEdge(Adapter(raising(error)))

    answer = edge.resolve(DIRECT_EVENT, None)

    assert answer == {"error": error.message, "status": error.status}
    assert emitted_metrics(capsys.readouterr().out) == ["ColdStart", f"Errors{error.status}"]


@pytest.mark.parametrize(
    ("edge_kind", "error"),
    [
        (AnsweringEdge, Unavailable("storage unreachable")),  # retried by the caller's policy
        (BehindEdge, Unavailable("storage unreachable")),
        (BehindEdge, InvalidInput("event: expected an SQS event")),  # an SQS batch must not look handled
        (AnsweringEdge, RuntimeError("a bug")),
        (BehindEdge, RuntimeError("a bug")),
    ],
    ids=["answering-unavailable", "unavailable", "sqs-client-error", "answering-bug", "bug"],
)
def test_what_the_edge_does_not_answer_is_raised_and_the_metrics_still_flush(
    capsys: pytest.CaptureFixture[str], edge_kind: type[Edge], error: Exception
) -> None:
    edge = edge_kind(Adapter(raising(error)))  # type: ignore[call-arg]

    with pytest.raises(type(error)):
        edge.resolve(SQS_EVENT, None)

    assert emitted_metrics(capsys.readouterr().out) == ["ColdStart"]
