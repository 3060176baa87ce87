"""Every path answers every method consistently, in every event format both HTTP functions take.

For each path, the methods that reach a handler are exactly those a 405's Allow header names: a method
in Allow never answers 405 itself, a method outside it always does, HEAD goes wherever GET goes and
answers as GET does, and a path no route takes is a 404 for every method (never a 405 with an Allow whose
methods then 404). Driven through the real handlers with real event JSON, over a moto bucket holding
seed-mlp.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from maas.registry import ModelRegistry
from tests.support.aws import TEST_BUCKET, moto_bucket_for_module
from tests.support.events import load_event
from tests.support.functions import start_function

if TYPE_CHECKING:
    from maas.training import TrainedModel

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
FORMATS = ("http_api", "rest_api", "function_url")
READ = "GET, HEAD"
NOWHERE = ""
ROUTE_NOT_FOUND = "route: expected"
REGISTRY_BUCKET = "maas-test-methods-registry"

# Path -> the Allow header every other method gets ("" where no route takes the path: 404 everywhere).
INFER_PATHS: dict[str, str] = {
    "/": READ,
    "/v2": READ,
    "/v2/health/live": READ,
    "/v2/health/ready": READ,
    "/v2/models": READ,
    "/v2/models/seed-mlp": READ,
    "/v2/models/seed-mlp/ready": READ,
    "/v2/models/seed-mlp/versions/1": READ,
    "/v2/models/seed-mlp/versions/1/ready": READ,
    "/v2/models/seed-mlp/versions/staging/ready": READ,
    "/v2/models/seed-mlp%40staging": READ,
    "/v2/models/no-such-model": READ,
    "/v2/models/Not_Valid!": READ,
    # A model may be called "infer" or "ready": the path is metadata, not a verb.
    "/v2/models/infer": READ,
    "/v2/models/seed-mlp/versions/ready": READ,
    "/v2/models/seed-mlp/infer": "POST",
    "/v2/models/seed-mlp/versions/1/infer": "POST",
    "/v2/models/seed-mlp/explain": "POST",
    "/v2/models/seed-mlp/versions/1/explain": "POST",
    "/v2/models/no-such-model/infer": "POST",
    "/v2/repository/index": "POST",
    "/v2/models/seed-mlp/versions": NOWHERE,
    "/v2/models//infer": NOWHERE,
    "/v2/models/seed-mlp/versions//infer": NOWHERE,
    # A character no path parameter takes: no route, whichever method.
    '/v2/models/a"b': NOWHERE,
    '/v2/models/a"b/infer': NOWHERE,
    "/v2/health": NOWHERE,
    "/v3/models": NOWHERE,
    "/v1/models": READ,
    "/v1/models/seed-mlp": READ,
    "/v1/models/seed-mlp@staging": READ,
    "/v1/models/no-such-model": READ,
    "/v1/models/seed-mlp:predict": "POST",
    "/v1/models/seed-mlp:explain": "POST",
    "/v1/models/no-such-model:predict": "POST",
    # Before the verb, the name is whatever the POST route takes; the POST answers 400 for a bad one.
    "/v1/models/seed-mlp:predict:predict": "POST",
    "/v1/models/Not_Valid!:predict": "POST",
    # No name at all: neither the POST routes nor GET's model status take it.
    "/v1/models/:predict": NOWHERE,
    "/v1/models/:explain": NOWHERE,
    # Not a verb, or not the literal ':': a name (which GET then refuses with a 400).
    "/v1/models/seed-mlp:foo": READ,
    "/v1/models/seed-mlp%3Apredict": READ,
    "/v1/models/seed-mlp:predict/more": NOWHERE,
    "/openapi.json": READ,
    "/docs": READ,
}
REGISTRY_PATHS: dict[str, str] = {
    "/registry/models": READ,
    "/registry/models/seed-mlp": READ,
    "/registry/models/no-such-model": READ,
    "/registry/models/Not_Valid!": READ,
    "/registry/models/seed-mlp/versions/1": READ,
    "/registry/models/seed-mlp/versions/1/files/card.md": READ,
    "/registry/models/seed-mlp/versions/1/files/model.onnx": READ,
    "/registry/models/seed-mlp/diff": READ,
    "/registry/models/seed-mlp/gate": READ,
    "/registry/models/seed-mlp/versions/1/files": NOWHERE,
    "/registry/models/seed-mlp/aliases/production": "DELETE, PUT",
    "/registry/models/seed-mlp/aliases/production/rollback": "POST",
    "/registry/models/seed-mlp/promote": "POST",
    "/registry/models/seed-mlp/versions/1/tags": "PUT",
    "/registry/models/seed-mlp/versions/1/archive": "POST",
    "/registry/models/seed-mlp/versions": NOWHERE,
    "/registry/models//versions/1": NOWHERE,
    "/registry/nothing/here": NOWHERE,
    "/v2/health/live": NOWHERE,
}
# The REST API resolver ignores trailing slashes; HTTP API and Function URLs take the path as written.
TRAILING_SLASH_PATHS: dict[str, tuple[str, str]] = {
    "/v2/": (NOWHERE, READ),
    "/v2/models/seed-mlp/": (NOWHERE, READ),
    "/v2/models/seed-mlp/infer/": (NOWHERE, "POST"),
    "/v1/models/seed-mlp:predict/": (NOWHERE, "POST"),
}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: str

    @property
    def error(self) -> str:
        answer = json.loads(self.body)
        assert set(answer) == {"error"}, answer
        message: str = answer["error"]
        return message


@dataclass(frozen=True)
class Functions:
    infer: ModuleType
    registry: ModuleType


@pytest.fixture(scope="module")
def functions(seed_model: TrainedModel) -> Iterator[Functions]:
    """Both HTTP functions, each over its own moto bucket holding seed-mlp v1 (the registry's writes stay
    out of what the infer function serves), imported once: routing is what is under test, not S3."""
    from maas.training import publish_trained

    with moto_bucket_for_module() as (env, s3):
        s3.create_bucket(Bucket=REGISTRY_BUCKET)
        loaded = {}
        for function, bucket in (("infer", TEST_BUCKET), ("registry", REGISTRY_BUCKET)):
            publish_trained(seed_model, ModelRegistry(s3, bucket))
            # Settings are read at import, as on Lambda.
            loaded[function] = start_function(env, function, MAAS_BUCKET=bucket)
        yield Functions(**loaded)


def event_for(event_format: str, method: str, path: str) -> dict[str, Any]:
    """A real event of `event_format`, re-aimed at `method` and `path`, with an empty JSON body."""
    if event_format == "rest_api":
        event = copy.deepcopy(load_event("rest_v1_infer.json"))
        event["path"] = path
        event["httpMethod"] = event["requestContext"]["httpMethod"] = method
        event["resource"] = event["requestContext"]["resourcePath"] = "/{proxy+}"
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    else:
        name = "function_url_infer.json" if event_format == "function_url" else "http_v2_health_live.json"
        event = copy.deepcopy(load_event(name))
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
        event.pop("pathParameters", None)
    event["body"] = "{}"
    event["isBase64Encoded"] = False
    return event


def answers(function: ModuleType, event_format: str, path: str) -> dict[str, Answer]:
    """Each method's answer for `path`; GET and HEAD first and back to back, before any write."""
    result = {}
    for method in METHODS:
        response = function.lambda_handler(event_for(event_format, method, path), None)
        headers = {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ", ".join(str(v) for v in values)
        result[method] = Answer(response["statusCode"], headers, response.get("body") or "")
    return result


def check_consistency(answered: dict[str, Answer], expected_allow: str) -> None:
    served = [method for method in METHODS if answered[method].status != 405]
    refused = {method: answer for method, answer in answered.items() if answer.status == 405}
    if expected_allow == NOWHERE:
        # Unknown path: the same 404 for every method, never a 405 pointing at methods that 404.
        assert refused == {}
        for method, answer in answered.items():
            assert answer.status == 404, (method, answer)
            assert answer.error.startswith(ROUTE_NOT_FOUND), (method, answer.error)
        return
    assert sorted(served) == expected_allow.split(", "), {m: a.status for m, a in answered.items()}
    for method, answer in refused.items():
        assert answer.headers["allow"] == expected_allow, method
        assert answer.error.startswith(f"method: expected {expected_allow.replace(', ', ' or ')} for ")
        assert answer.error.endswith(f", got {method}")
    for method in served:
        # A served method may still be a 404 (no such model) or a 400, but never "no such route".
        assert not (answered[method].status == 404 and answered[method].error.startswith(ROUTE_NOT_FOUND))
    # HEAD is GET without a body on the wire; the function answers it as GET (an error names the method).
    head, get = answered["HEAD"], answered["GET"]
    assert (head.status, head.headers) == (get.status, get.headers)
    assert head.body == get.body.replace("got GET", "got HEAD")


@pytest.mark.parametrize("event_format", FORMATS)
@pytest.mark.parametrize(("path", "allow"), INFER_PATHS.items(), ids=list(INFER_PATHS))
def test_the_infer_function_answers_every_method_consistently(
    functions: Functions, event_format: str, path: str, allow: str
) -> None:
    check_consistency(answers(functions.infer, event_format, path), allow)


@pytest.mark.parametrize("event_format", FORMATS)
@pytest.mark.parametrize(("path", "allow"), REGISTRY_PATHS.items(), ids=list(REGISTRY_PATHS))
def test_the_registry_function_answers_every_method_consistently(
    functions: Functions, event_format: str, path: str, allow: str
) -> None:
    check_consistency(answers(functions.registry, event_format, path), allow)


@pytest.mark.parametrize("event_format", FORMATS)
@pytest.mark.parametrize(("path", "allows"), TRAILING_SLASH_PATHS.items(), ids=list(TRAILING_SLASH_PATHS))
def test_a_trailing_slash_is_consistent_in_each_event_format(
    functions: Functions, event_format: str, path: str, allows: tuple[str, str]
) -> None:
    http_allow, rest_allow = allows
    allow = rest_allow if event_format == "rest_api" else http_allow
    check_consistency(answers(functions.infer, event_format, path), allow)


def test_the_reported_contradiction_is_gone(functions: Functions) -> None:
    """POST /v1/models/:predict said Allow: GET while GET said Allow: POST; now both are a plain 404."""
    for method in ("POST", "GET"):
        answer = answers(functions.infer, "http_api", "/v1/models/:predict")[method]
        assert answer.status == 404 and "allow" not in answer.headers


@pytest.mark.parametrize(
    "path", ["/", "/v2/health/live", "/v2/health/ready", "/v2/models/seed-mlp/ready", "/v1/models/seed-mlp"]
)
def test_head_on_a_health_check_is_its_get(functions: Functions, path: str) -> None:
    answered = answers(functions.infer, "http_api", path)
    assert answered["HEAD"].status == answered["GET"].status == 200
    assert answered["HEAD"].headers == answered["GET"].headers
