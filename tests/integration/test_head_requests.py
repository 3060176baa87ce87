"""HEAD over real HTTP: template.yaml's HEAD routes, the functions, and the local gateway together.

Given the local stack with seed-mlp published, HEAD on every GET route (health checks included) must
answer with GET's status and headers, Content-Length included, and no body; on a registry route it
must meet the same IAM authorizer as GET does, never fall through to the catch-all.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from maas.local import LocalStack
from maas.training import TrainedModel, publish_trained

# Headers that differ between any two requests, whatever the method.
PER_REQUEST = {"date", "apigw-requestid", "x-amzn-requestid", "x-amzn-trace-id"}
DATA_PLANE_GETS = [
    "/",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models",
    "/v2/models/seed-mlp",
    "/v2/models/seed-mlp/ready",
    "/v2/models/seed-mlp/versions/1",
    "/v2/models/seed-mlp/versions/1/ready",
    "/v2/models/no-such-model",
    "/v1/models",
    "/v1/models/seed-mlp",
    "/v1/models/no-such-model",
    "/openapi.json",
    "/docs",
]
REGISTRY_GETS = [
    "/registry/models",
    "/registry/models/seed-mlp",
    "/registry/models/seed-mlp/versions/1",
    "/registry/models/seed-mlp/versions/1/files/card.md",
    "/registry/models/seed-mlp/diff?a=1&b=1",
    "/registry/models/seed-mlp/gate?version=1",
]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@pytest.fixture(scope="module")
def stack(isolated_module_env: pytest.MonkeyPatch, seed_model: TrainedModel) -> Iterator[LocalStack]:
    with LocalStack(port=0, embedded=True) as running:
        publish_trained(seed_model, running.registry)
        yield running


def request(stack: LocalStack, method: str, path: str) -> Reply:
    connection = http.client.HTTPConnection(urlsplit(stack.url).netloc, timeout=30)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, headers, response.read())
    finally:
        connection.close()


def comparable(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in PER_REQUEST}


@pytest.mark.parametrize("path", DATA_PLANE_GETS)
def test_head_answers_as_get_without_a_body(stack: LocalStack, path: str) -> None:
    get = request(stack, "GET", path)
    head = request(stack, "HEAD", path)

    assert head.status == get.status != 405
    assert comparable(head.headers) == comparable(get.headers)
    assert int(head.headers["content-length"]) == len(get.body) > 0
    assert head.body == b""


@pytest.mark.parametrize("path", REGISTRY_GETS)
def test_head_on_a_registry_route_meets_the_same_authorizer_as_get(stack: LocalStack, path: str) -> None:
    get = request(stack, "GET", path)
    head = request(stack, "HEAD", path)

    assert get.status == head.status == 403
    assert comparable(head.headers) == comparable(get.headers)
    assert head.body == b""
