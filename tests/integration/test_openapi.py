"""The OpenAPI document is valid, served and browsable, and the API it describes survives a bounded fuzz.

Given the local stack on an ephemeral port with seed-mlp published, /openapi.json must be a valid
OpenAPI 3.1 document, /docs must serve the Swagger UI (and the same document as ?format=json), and
schemathesis, generating a few requests per documented operation from that very document, must never
get a 5xx back. MAAS_DOCS=0 removes /docs but keeps /openapi.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator import validate as validate_spec
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.schemas import OpenApiSchema

from maas.api.openapi import OPERATIONS
from maas.api.route_table import INFER, Route, routes_of
from maas.datatypes import V2_NAMES
from maas.local import LocalStack
from maas.training import TrainedModel, publish_trained
from tests.support.events import http_event
from tests.support.functions import load_function_module, start_function
from tests.support.http import HttpCall

# Bounded and reproducible: a fixed seed per test, no example database, no shrinking (a failure is reported
# as found). 20 requests per operation, 40 where there is a body to fuzz, keep the whole run well under a
# minute on two cores.
EXAMPLES = 20
BODY_EXAMPLES = 40
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
# Path parameters that reach the published model, so generated bodies get past the 404 to validation.
SEED_PATH_PARAMETERS = {"name": "seed-mlp", "version": "1"}

# The document types datatype as any string and data as any list, so schemathesis alone rarely gets past
# the datatype check. These near-valid bodies (seed-mlp's own tensor, or one slightly off) reach shape and
# value validation, the signature checks, requested outputs and the model itself.
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_FLOATS = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
_SEED_TENSORS = st.integers(min_value=0, max_value=3).flatmap(
    lambda rows: st.fixed_dictionaries(
        {
            "name": st.just("input"),
            "datatype": st.just("FP32"),
            "shape": st.just([rows, 10]),
            "data": st.lists(_FLOATS, min_size=rows * 10, max_size=rows * 10),
        }
    )
)
_ODD_TENSORS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "features", ""]),
        "datatype": st.sampled_from([*V2_NAMES, "fp32", "FLOAT"]),
        "shape": st.one_of(st.just([1, 10]), st.lists(st.integers(min_value=-1, max_value=12), max_size=3)),
    },
    optional={
        "data": st.lists(st.one_of(_JSON_SCALARS, st.lists(_JSON_SCALARS, max_size=10)), max_size=12),
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.one_of(st.integers(-1, 64), st.text(max_size=2))}
        ),
    },
)
_BINARY_FLAGS = st.one_of(st.booleans(), st.integers(0, 1), st.text(max_size=3))
_REQUESTED_OUTPUTS = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["output", "scores"])},
        optional={"parameters": st.fixed_dictionaries({}, optional={"binary_data": _BINARY_FLAGS})},
    ),
    max_size=2,
)
NEAR_VALID_V2_BODIES: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "inputs": st.one_of(
            _SEED_TENSORS.map(lambda tensor: [tensor]),
            st.lists(st.one_of(_SEED_TENSORS, _ODD_TENSORS), max_size=2),
        )
    },
    optional={
        "id": st.text(max_size=8),
        "outputs": _REQUESTED_OUTPUTS,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": _BINARY_FLAGS}),
    },
)
NEAR_VALID_V1_BODIES: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "instances": st.one_of(
            st.lists(st.lists(_FLOATS, min_size=10, max_size=10), min_size=1, max_size=3),
            st.lists(
                st.one_of(st.lists(_FLOATS, min_size=9, max_size=11), _JSON_SCALARS, st.lists(_JSON_SCALARS)),
                max_size=3,
            ),
        )
    },
    optional={"parameters": st.dictionaries(st.text(max_size=3), _JSON_SCALARS, max_size=1)},
)


@pytest.fixture(scope="module")
def stack(isolated_module_env: pytest.MonkeyPatch, seed_model: TrainedModel) -> Iterator[LocalStack]:
    # Embedded moto keeps its buckets for the whole process: a bucket of its own keeps seed-mlp at version 1.
    with LocalStack(port=0, embedded=True, bucket="maas-openapi-check") as running:
        manifest = publish_trained(seed_model, running.registry)
        assert (manifest.name, manifest.version) == ("seed-mlp", 1)
        yield running


@pytest.fixture(scope="module")
def served_document(stack: LocalStack) -> dict[str, Any]:
    response = requests.get(f"{stack.url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def api_schema(stack: LocalStack, served_document: dict[str, Any]) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{stack.url}/openapi.json")


def test_the_served_document_is_valid_openapi_3_1(served_document: dict[str, Any]) -> None:
    assert served_document["openapi"].startswith("3.1")
    validate_spec(served_document, cls=OpenAPIV31SpecValidator)


def test_the_document_describes_every_route_the_function_serves(
    served_document: dict[str, Any], isolated_env: pytest.MonkeyPatch
) -> None:
    isolated_env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # One document describes the data plane: the infer function's routes and the generate function's.
    served = {
        (method.lower(), re.sub(r"<(\w+)>", r"{\1}", rule))
        for name in ("infer", "generate")
        for method, rule in load_function_module(name).app.http.routes.rules
    }

    documented = {(method, path) for path, item in served_document["paths"].items() for method in item}

    # The routes that serve the document are not operations of the API it describes.
    undocumented = {
        (method.lower(), route.path)
        for route in routes_of(INFER)
        if route.tag is None
        for method in route.methods
    }
    assert documented == served - undocumented
    # HEAD goes wherever GET goes, in the document as in the app.
    assert {path for method, path in documented if method == "head"} == {
        path for method, path in documented if method == "get"
    }


def test_docs_serve_the_swagger_ui_and_the_same_document_as_json(
    stack: LocalStack, served_document: dict[str, Any], http: HttpCall
) -> None:
    page = http("GET", f"{stack.url}/docs")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in page.body.lower()

    as_json = http("GET", f"{stack.url}/docs?format=json")
    assert as_json.status == 200
    assert as_json.headers["Content-Type"].startswith("application/json")
    assert as_json.json() == served_document


def _handler_event(path: str) -> dict[str, Any]:
    return http_event("GET", path)


def test_with_maas_docs_0_the_ui_is_gone_but_the_document_stays(isolated_env: pytest.MonkeyPatch) -> None:
    # Settings are read when the function is imported, as on Lambda; no route here touches S3.
    isolated_env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    function = start_function(isolated_env, "infer", MAAS_DOCS="0")

    docs = function.lambda_handler(_handler_event("/docs"), None)
    assert docs["statusCode"] == 404
    assert set(json.loads(docs["body"])) == {"error"}

    document = function.lambda_handler(_handler_event("/openapi.json"), None)
    assert document["statusCode"] == 200
    assert json.loads(document["body"])["openapi"].startswith("3.1")


def _near_valid_bodies(op: Route) -> st.SearchStrategy[dict[str, Any]] | None:
    if op.path.endswith("/infer"):
        return NEAR_VALID_V2_BODIES
    if op.path.endswith(":predict"):
        return NEAR_VALID_V1_BODIES
    return None


def _label(op: Route) -> str:
    return f"{op.method.upper()} {op.path}"


@pytest.mark.parametrize("operation", OPERATIONS, ids=[_label(op) for op in OPERATIONS])
def test_generated_requests_never_get_a_server_error(
    stack: LocalStack, api_schema: OpenApiSchema, operation: Route
) -> None:
    api_operation = api_schema[operation.path][operation.method.upper()]
    strategies = [
        api_operation.as_strategy(GenerationMode.POSITIVE),
        api_operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    pinned = {name: value for name, value in SEED_PATH_PARAMETERS.items() if f"{{{name}}}" in operation.path}
    if pinned:
        strategies.append(api_operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned))
    near_valid = _near_valid_bodies(operation)
    if near_valid is not None:
        strategies.append(
            near_valid.map(
                lambda body: api_operation.Case(
                    path_parameters=pinned, body=body, media_type="application/json"
                )
            )
        )

    with requests.Session() as session:

        @hypothesis.settings(FUZZ_SETTINGS, max_examples=BODY_EXAMPLES if operation.request else EXAMPLES)
        @hypothesis.given(case=st.one_of(strategies))
        def no_server_error(case: Case[Any]) -> None:
            response = case.call(base_url=stack.url, session=session, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])
            if 400 <= response.status_code < 500 and "json" in response.headers.get("Content-Type", ""):
                # The function answers {"error"}; the gateway's own refusals (no route) answer {"message"}.
                answer = response.json()
                assert isinstance(answer, dict) and set(answer) in ({"error"}, {"message"}), answer

        no_server_error()
