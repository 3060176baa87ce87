"""The local gateway's authorizers: each route's authorization enforced on a request as API Gateway does.

AWS_IAM routes need a SigV4 signature by a key the local process holds (403 otherwise, see
maas.local.sigv4); JWT routes a valid bearer token of the configured issuer (401, or 403 for missing
scopes, see maas.local.jwt_authorizer); Lambda authorizers are not emulated, so their routes answer
500. An allowed request gets the requestContext.authorizer its event carries (.iam or .jwt).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from maas.local.http_server import GatewayResponse, IncomingRequest, gateway_message
from maas.local.sam import RouteAuthorization, TemplateRoute
from maas.local.sigv4 import (
    LocalCredentials,
    SignatureRejectedError,
    credentials_from_environment,
    verify_sigv4,
)

if TYPE_CHECKING:
    from maas.local.jwt_authorizer import JwtAuthorizer

logger = logging.getLogger(__name__)


class AccessDeniedError(Exception):
    """The route's authorizer refused the request: `response` is API Gateway's answer."""

    def __init__(self, response: GatewayResponse, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


class RouteAuthorizer:
    """Checks requests against the authorization of `routes`, for an API in `account_id` whose
    signatures must be scoped to `region`.

    `iam_credentials`: the keys AWS_IAM routes accept; None means the ones botocore resolves in this
    process when `resolve_iam_credentials()` is called. `jwt_authorizer`: shared token checks; one is
    made when a route needs it (PyJWT is then imported)."""

    def __init__(
        self,
        routes: Sequence[TemplateRoute],
        *,
        account_id: str,
        region: str,
        iam_credentials: Sequence[LocalCredentials] | None = None,
        jwt_authorizer: JwtAuthorizer | None = None,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self._needs_iam = any(r.authorization.type == "AWS_IAM" for r in routes)
        self._iam_credentials: dict[str, LocalCredentials] | None = (
            None if iam_credentials is None else {c.access_key: c for c in iam_credentials}
        )
        if jwt_authorizer is None and any(r.authorization.type == "JWT" for r in routes):
            from maas.local.jwt_authorizer import JwtAuthorizer  # PyJWT only for stacks with JWT routes

            jwt_authorizer = JwtAuthorizer()
        self._jwt_authorizer = jwt_authorizer

    @property
    def iam_credentials(self) -> Mapping[str, LocalCredentials]:
        """The keys AWS_IAM routes accept, by access key (empty until resolved)."""
        return self._iam_credentials or {}

    def resolve_iam_credentials(self) -> None:
        """Take this process's keys for AWS_IAM routes, once, if none were given."""
        if self._iam_credentials is not None or not self._needs_iam:
            return
        found = credentials_from_environment(self.account_id)
        self._iam_credentials = {found.access_key: found} if found is not None else {}
        if found is None:
            logger.warning("no AWS credentials in this process: every AWS_IAM route will answer 403")

    def authorize(
        self, request: IncomingRequest, route: TemplateRoute, now: datetime, *, default_host: str
    ) -> dict[str, Any] | None:
        """The event's requestContext.authorizer for an allowed request (None on an open route);
        AccessDeniedError otherwise. `default_host` stands in for a request without a Host header."""
        authorization = route.authorization
        if authorization.type == "NONE":
            return None
        if authorization.type == "AWS_IAM":
            return {"iam": self._verified_caller(request, now, default_host).authorizer_context()}
        if authorization.type == "JWT":
            return {"jwt": self._verified_token(request, authorization)}
        raise AccessDeniedError(
            gateway_message(500, "Internal Server Error"),
            f"{authorization.authorizer} is a Lambda authorizer, which the local gateway does not run",
        )

    def _verified_caller(
        self, request: IncomingRequest, now: datetime, default_host: str
    ) -> LocalCredentials:
        headers = {name.lower(): value for name, value in request.headers}
        # The client signed the URL it addressed: its scheme and Host, then the raw target.
        scheme = headers.get("x-forwarded-proto", "http")
        url = f"{scheme}://{headers.get('host', default_host)}{request.target}"
        try:
            return verify_sigv4(
                method=request.method,
                url=url,
                headers=request.headers,
                body=request.body,
                credentials=self.iam_credentials,
                region=self.region,
                now=now,
            )
        except SignatureRejectedError as exc:
            raise AccessDeniedError(gateway_message(403, exc.message), exc.reason) from None

    def _verified_token(self, request: IncomingRequest, authorization: RouteAuthorization) -> dict[str, Any]:
        from maas.local.jwt_authorizer import JwtRejectedError, bearer_token

        assert authorization.jwt is not None and self._jwt_authorizer is not None
        token = bearer_token(_identity_source_value(request, authorization.jwt.identity_sources[0]))
        try:
            if token is None:
                raise JwtRejectedError(401, "no token in " + authorization.jwt.identity_sources[0])
            verified = self._jwt_authorizer.verify(token, authorization.jwt, authorization.scopes)
        except JwtRejectedError as exc:
            response = gateway_message(exc.status, exc.message)
            if exc.status == 401:
                challenge = f'Bearer error="invalid_token", error_description="{exc.reason}"'
                response.headers.append(("WWW-Authenticate", challenge if token else "Bearer"))
            raise AccessDeniedError(response, exc.reason) from None
        return verified.authorizer_context()


def _identity_source_value(request: IncomingRequest, source: str) -> str | None:
    """The value an identity source selects: $request.header.<name> or $request.querystring.<name>."""
    kind, _, name = source.removeprefix("$request.").partition(".")
    if kind == "header":
        values = [value for key, value in request.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None
    if kind == "querystring":
        return dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True)).get(name)
    return None
