"""The HTTP transport's error bodies: written without the V2 wire types, as ErrorResponse writes them."""

from __future__ import annotations

import pytest

from maas.api.http_transport import error_response
from maas.protocol.v2_types import ErrorResponse

MESSAGES = [
    "route: expected a registry route, got GET /nowhere",
    'quotes " and backslashes \\ escaped',
    "control characters \x00 \x1f \n \t \r \b \f escaped, DEL \x7f not",
    "non-ASCII kept as UTF-8: é, 模型, 😀",
    "line and paragraph separators \u2028 \u2029",
]


@pytest.mark.parametrize("message", MESSAGES)
def test_an_error_body_is_the_documented_error_response(message: str) -> None:
    response = error_response(404, message)
    assert response.status_code == 404
    assert response.body == ErrorResponse(error=message).model_dump_json()
    assert ErrorResponse.model_validate_json(str(response.body)).error == message
