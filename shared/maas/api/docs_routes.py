"""/openapi.json and a Swagger UI at /docs that works offline (Powertools ships the UI's assets).

The document and the UI are built on first request: importing Powertools' OpenAPI models and generating the
schema cost a cold start about 300 ms that no inference request needs.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from maas.api.route_table import OPENAPI_DOCUMENT, SWAGGER_UI
from maas.api.routing import ServedRoutes, json_response


def register_docs_routes(routes: ServedRoutes, *, swagger_ui_enabled: bool) -> None:
    @routes.add(OPENAPI_DOCUMENT)
    def openapi() -> Response[Any]:
        return json_response(_openapi_json())

    if swagger_ui_enabled:

        @routes.add(SWAGGER_UI)
        def docs() -> Response[Any]:
            # The UI rewrites its address bar to ?format=json, as Powertools' own /swagger does.
            if routes.router.current_event.get_query_string_value("format") == "json":
                return json_response(_openapi_json())
            return Response(status_code=200, content_type=content_types.TEXT_HTML, body=_swagger_html())


@cache
def _openapi_json() -> str:
    from maas.api.openapi import openapi_document

    return json.dumps(openapi_document(), separators=(",", ":"))


@cache
def _swagger_html() -> str:
    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    assets = Path(swagger_ui.__file__).parent
    return generate_swagger_html(
        spec=_openapi_json(),
        swagger_js=(assets / "swagger-ui-bundle.min.js").read_text(),
        swagger_css=(assets / "swagger-ui.min.css").read_text(),
        swagger_base_url="",
        oauth2_config=None,
    )
