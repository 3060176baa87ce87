"""The local gateway enforces the authorization template.yaml declares, over real HTTP.

AWS_IAM routes take SigV4 signatures made by botocore's own signer and refuse anything else with API
Gateway's 403 answers; JWT routes take RS256 tokens from a real OIDC issuer (a tiny discovery + JWKS
server run by the test) and refuse others with 401. A refused request never reaches the function:
the echo function records every invocation, and the record stays empty.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from maas.local.gateway import LocalGateway
from maas.local.sam import RouteAuthorization
from maas.local.sigv4 import SIGNATURE_MISMATCH, LocalCredentials
from maas.local.stack import LocalStack
from maas.local.template_reader import load_template
from tests.support.http import HttpResult
from tests.support.local_projects import EchoProject, GatewayFactory, gateway_starter
from tests.support.oidc_issuer import Issuer, new_rsa_key, running_issuer
from tests.support.paths import ROOT

ACCESS_KEY = "AKIDLOCALTEST"
SECRET_KEY = "local-secret"
SESSION_TOKEN = "local-session"
REGION = "us-east-1"
AUDIENCE = "maas-api"
LOCAL_KEYS = [LocalCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)]

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  RecordFile: {Type: String}
  DataPlaneAuth: {Type: String, Default: NONE, AllowedValues: [NONE, JWT, AWS_IAM]}
  JwtIssuer: {Type: String, Default: ""}
  JwtAudience: {Type: CommaDelimitedList, Default: ""}
Conditions:
  DataPlaneJwt: !Equals [!Ref DataPlaneAuth, JWT]
  DataPlaneIam: !Equals [!Ref DataPlaneAuth, AWS_IAM]
Globals:
  Function:
    Runtime: python3.12
    Environment:
      Variables:
        RECORD_FILE: !Ref RecordFile
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        EnableIamAuthorizer: true
        Authorizers:
          Admins:
            JwtConfiguration: {issuer: !Ref JwtIssuer, audience: !Ref JwtAudience}
            IdentitySource: $request.header.Authorization
      DefinitionBody:
        openapi: "3.0.1"
        paths:
          "/infer/{name}":
            post:
              security: !If [DataPlaneJwt, [{DataPlaneJwt: []}], !If [DataPlaneIam, [{AWS_IAM: []}], []]]
          "$default":
            x-amazon-apigateway-any-method:
              security: !If [DataPlaneJwt, [{DataPlaneJwt: []}], !If [DataPlaneIam, [{AWS_IAM: []}], []]]
        components:
          securitySchemes:
            DataPlaneJwt: !If
              - DataPlaneJwt
              - type: oauth2
                x-amazon-apigateway-authorizer:
                  type: jwt
                  identitySource: "$request.header.Authorization"
                  jwtConfiguration: {issuer: !Ref JwtIssuer, audience: !Ref JwtAudience}
              - !Ref AWS::NoValue
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      Events:
        Infer: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: POST, Path: "/infer/{name}"}}
        CatchAll: {Type: HttpApi, Properties: {ApiId: !Ref Api}}
        AdminList:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /admin/items, Auth: {Authorizer: AWS_IAM}}
        AdminPut:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: PUT, Path: "/admin/items/{id}", Auth: {Authorizer: AWS_IAM}}
        Scoped:
          Type: HttpApi
          Properties:
            ApiId: !Ref Api
            Method: GET
            Path: /scoped
            Auth: {Authorizer: Admins, AuthorizationScopes: [maas/admin]}
"""

ECHO_APP = """\
import json
import os


def handler(event, context):
    with open(os.environ["RECORD_FILE"], "a") as record:
        record.write(event["routeKey"] + "\\n")
    return {"statusCode": 200, "body": json.dumps({"requestContext": event["requestContext"],
                                                   "body": event.get("body")})}
"""


@pytest.fixture
def project(tmp_path: Path) -> EchoProject:
    return EchoProject.write(tmp_path, TEMPLATE, ECHO_APP)


@pytest.fixture
def start_gateway(project: EchoProject, isolated_env: pytest.MonkeyPatch) -> Iterator[GatewayFactory]:
    """Starts a gateway over the project's template read with the given parameter overrides."""
    with gateway_starter(project.root) as start:
        yield lambda **parameters: start(project.template(**parameters), iam_credentials=LOCAL_KEYS)


def send(
    gateway: LocalGateway | str,
    method: str,
    target: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> HttpResult:
    """One raw HTTP request, headers exactly as given (plus Host and Content-Length)."""
    base = gateway if isinstance(gateway, str) else gateway.url
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return HttpResult(response.status, dict(response.headers), response.read())
    finally:
        connection.close()


def sign(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    token: str | None = SESSION_TOKEN,
    service: str = "execute-api",
    region: str = REGION,
    at: datetime | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`headers` and the ones botocore's SigV4 signer adds for this request, signed now or at `at`."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    if at is None:
        signer.add_auth(request)
        return dict(request.headers.items())
    # add_auth always signs with the current time; a stale signature takes its steps with another one.
    timestamp = at.strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = timestamp
    request.headers["X-Amz-Date"] = timestamp
    if token is not None:
        request.headers["X-Amz-Security-Token"] = token
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signed_headers = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return dict(request.headers.items())


def presign(url: str, *, expires: int = 60, secret_key: str = SECRET_KEY) -> str:
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(
        Credentials(ACCESS_KEY, secret_key, SESSION_TOKEN), "execute-api", REGION, expires
    ).add_auth(request)
    assert request.url is not None
    return request.url


def target_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# ---- AWS_IAM


def test_an_unsigned_call_to_an_iam_route_is_forbidden_and_never_reaches_the_function(
    start_gateway: GatewayFactory, project: EchoProject
) -> None:
    gateway = start_gateway()

    response = send(gateway, "GET", "/admin/items")

    assert response.status == 403
    assert response.json() == {"message": "Forbidden"}
    assert response.headers["Content-Type"] == "application/json"
    assert project.invocations() == []


def test_a_signed_call_reaches_the_function_with_the_callers_iam_identity(
    start_gateway: GatewayFactory, project: EchoProject
) -> None:
    gateway = start_gateway()
    body = b'{"tags": {"stage": "prod"}}'
    url = f"{gateway.url}/admin/items/7?dry_run=1"

    headers = sign("PUT", url, body, headers={"Content-Type": "application/json"})

    response = send(gateway, "PUT", "/admin/items/7?dry_run=1", body, headers)

    assert response.status == 200, response.body
    context = response.json()["requestContext"]
    assert context["authorizer"]["iam"] == {
        "accessKey": ACCESS_KEY,
        "accountId": "123456789012",
        "callerId": ACCESS_KEY,
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": "arn:aws:iam::123456789012:user/maas-local",
        "userId": ACCESS_KEY,
    }
    assert response.json()["body"] == body.decode()
    assert project.invocations() == ["PUT /admin/items/{id}"]


def test_a_signature_without_the_session_token_is_accepted_as_curl_sends_it(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway()
    url = f"{gateway.url}/admin/items"

    response = send(gateway, "GET", "/admin/items", headers=sign("GET", url, token=None))

    assert response.status == 200, response.body


def test_a_presigned_url_is_accepted_until_it_expires(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()

    fresh = send(gateway, "GET", target_of(presign(f"{gateway.url}/admin/items?page=2")))
    stale = presign(f"{gateway.url}/admin/items", expires=1)
    time.sleep(2.1)
    expired = send(gateway, "GET", target_of(stale))

    assert fresh.status == 200, fresh.body
    assert expired.status == 403
    assert expired.json()["message"].startswith("Signature expired")


def test_the_gateway_log_never_holds_a_presigned_urls_credentials(
    start_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = start_gateway()
    caplog.set_level(logging.INFO, logger="maas.local")
    accepted = send(gateway, "GET", target_of(presign(f"{gateway.url}/admin/items")))
    refused = send(
        gateway, "GET", target_of(presign(f"{gateway.url}/admin/items", secret_key="not-the-secret"))
    )

    assert (accepted.status, refused.status) == (200, 403)
    assert "/admin/items" in caplog.text
    for secret_part in ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"):
        assert secret_part not in caplog.text


@pytest.mark.parametrize(
    ("sent", "signed", "message"),
    [
        pytest.param(
            {},
            {"secret_key": "not-the-secret"},
            SIGNATURE_MISMATCH,
            id="the wrong secret",
        ),
        pytest.param(
            {},
            {"access_key": "AKIDSOMEONEELSE"},
            "The security token included in the request is invalid.",
            id="an unknown access key",
        ),
        pytest.param(
            {},
            {"token": "another-session"},
            "The security token included in the request is invalid.",
            id="another session token",
        ),
        pytest.param(
            {"body": b'{"tags": {"stage": "dev"}}'},
            {},
            SIGNATURE_MISMATCH,
            id="a body changed after signing",
        ),
        pytest.param(
            {"target": "/admin/items/8"},
            {},
            SIGNATURE_MISMATCH,
            id="a path changed after signing",
        ),
        pytest.param(
            {"target": "/admin/items/7?dry_run=0"},
            {},
            SIGNATURE_MISMATCH,
            id="a query changed after signing",
        ),
        pytest.param(
            {},
            {"at": timedelta(minutes=-20)},
            "Signature expired: ",
            id="a date 20 minutes ago",
        ),
        pytest.param(
            {},
            {"at": timedelta(minutes=20)},
            "Signature not yet current: ",
            id="a date 20 minutes ahead",
        ),
        pytest.param(
            {},
            {"service": "lambda"},
            "Credential should be scoped to correct service: 'execute-api'.",
            id="another service",
        ),
        pytest.param(
            {},
            {"region": "eu-west-1"},
            "Credential should be scoped to a valid region, not 'eu-west-1'.",
            id="another region",
        ),
    ],
)
def test_a_signature_that_does_not_hold_is_forbidden_with_api_gateways_message(
    start_gateway: GatewayFactory,
    project: EchoProject,
    sent: dict[str, Any],
    signed: dict[str, Any],
    message: str,
) -> None:
    gateway = start_gateway()
    body = b'{"tags": {"stage": "prod"}}'
    if "at" in signed:  # an offset from now, taken when the test runs
        signed = {**signed, "at": datetime.now(UTC) + signed["at"]}
    headers = sign("PUT", f"{gateway.url}/admin/items/7?dry_run=1", body, **signed)

    response = send(
        gateway, "PUT", sent.get("target", "/admin/items/7?dry_run=1"), sent.get("body", body), headers
    )

    assert response.status == 403
    assert response.json()["message"].startswith(message)
    assert project.invocations() == []


@pytest.mark.parametrize(
    ("signed_path", "target"), [("/admin", "/admin/items/.."), ("/admin/items", "/admin/items/.")]
)
def test_a_signature_does_not_cover_a_path_it_only_matches_once_normalised(
    start_gateway: GatewayFactory, project: EchoProject, signed_path: str, target: str
) -> None:
    """SigV4 signs the path with '.', '..' and empty segments resolved, while routes match the raw path: a
    signature for /admin would otherwise also open /admin/items/{id} with id '..'."""
    gateway = start_gateway()
    headers = sign("PUT", f"{gateway.url}{signed_path}", b"")

    response = send(gateway, "PUT", target, b"", headers)

    assert response.status == 403
    assert response.json()["message"].startswith(SIGNATURE_MISMATCH)
    assert project.invocations() == []


def test_a_bearer_token_on_an_iam_route_is_refused_without_echoing_it(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()

    response = send(gateway, "GET", "/admin/items", headers={"Authorization": "Bearer secret-token-value"})

    assert response.status == 403
    message = response.json()["message"]
    assert "Authorization header requires 'Credential' parameter." in message
    assert "secret-token-value" not in message


def unverifiable_authorization(scope_date: str) -> str:
    """A well-formed SigV4 Authorization header for `scope_date` whose signature is never right."""
    return (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope_date}/{REGION}/execute-api/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
    )


DATE_UNREADABLE = "Date header: expected an HTTP date between years 1 and 9999 in UTC"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param(
            {"Date": "Fri, 31 Dec 9999 23:59:59 -2359"}, "Forbidden", id="unsigned, a Date past 9999 in UTC"
        ),
        pytest.param(
            {
                "Authorization": unverifiable_authorization("99991231"),
                "Date": "Fri, 31 Dec 9999 23:59:59 -2359",
            },
            DATE_UNREADABLE,
            id="a Date past 9999 in UTC",
        ),
        pytest.param(
            {
                "Authorization": unverifiable_authorization("20240101"),
                "Date": "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
            },
            DATE_UNREADABLE,
            id="a Date with a 20-digit year",
        ),
        pytest.param(
            {"Authorization": unverifiable_authorization("20240101"), "Date": "yesterday"},
            DATE_UNREADABLE,
            id="a Date that is no date",
        ),
        pytest.param(
            {
                "Authorization": unverifiable_authorization("00991231"),
                "Date": "Sat, 01 Jan 100 00:00:00 +2359",
            },
            "Signature expired: 00991231T000100Z",
            id="a Date before year 100 in UTC",
        ),
        pytest.param(
            {"Authorization": unverifiable_authorization("99991231"), "X-Amz-Date": "99991231T235959Z"},
            "Signature not yet current: 99991231T235959Z",
            id="an X-Amz-Date at the end of 9999",
        ),
        pytest.param(
            {"Authorization": unverifiable_authorization("00010101"), "X-Amz-Date": "00010101T000000Z"},
            "Signature expired: 00010101T000000Z",
            id="an X-Amz-Date in year 1",
        ),
        *(
            pytest.param(
                {"Authorization": unverifiable_authorization("20240101"), "X-Amz-Date": stamp},
                "X-Amz-Date must be in the ISO 8601 basic format",
                id=f"an X-Amz-Date of {stamp!r}",
            )
            for stamp in ("2024111T1111Z", "20240101T000000", "2024-01-01T00:00:00Z", "+20240101T00000Z")
        ),
    ],
)
def test_a_date_that_cannot_be_read_or_is_out_of_range_is_forbidden_not_a_dropped_connection(
    start_gateway: GatewayFactory, project: EchoProject, headers: dict[str, str], message: str
) -> None:
    gateway = start_gateway()

    response = send(gateway, "GET", "/admin/items", headers=headers)

    assert response.status == 403
    assert response.json()["message"].startswith(message)
    assert project.invocations() == []


@pytest.mark.parametrize(
    "expires", ["+60", "6_0", " 60", "\uff16\uff10", "9" * 5000, "-1", "0", "604801", "60.0", "0x3c", ""]
)
def test_a_presigned_expiry_that_is_not_1_to_604800_plain_seconds_is_forbidden(
    start_gateway: GatewayFactory, project: EchoProject, expires: str
) -> None:
    gateway = start_gateway()
    url = presign(f"{gateway.url}/admin/items").replace("X-Amz-Expires=60", f"X-Amz-Expires={quote(expires)}")

    response = send(gateway, "GET", target_of(url))

    assert response.status == 403
    assert response.json()["message"] == "X-Amz-Expires must be a number of seconds from 1 to 604800."
    assert project.invocations() == []


# ---- the data plane, chosen by a parameter


def test_data_plane_routes_are_open_by_default(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway()

    infer = send(gateway, "POST", "/infer/seed", b"{}", {"Content-Type": "application/json"})
    fallback = send(gateway, "GET", "/anything/else")

    assert (infer.status, fallback.status) == (200, 200)
    assert "authorizer" not in infer.json()["requestContext"]


def test_with_data_plane_auth_aws_iam_only_signed_calls_reach_the_data_plane(
    start_gateway: GatewayFactory, project: EchoProject
) -> None:
    gateway = start_gateway(DataPlaneAuth="AWS_IAM")
    body = b'{"inputs": []}'

    unsigned = send(gateway, "POST", "/infer/seed", body)
    unsigned_fallback = send(gateway, "GET", "/anything/else")
    assert (unsigned.status, unsigned_fallback.status) == (403, 403)
    assert project.invocations() == []

    signed = send(gateway, "POST", "/infer/seed", body, sign("POST", f"{gateway.url}/infer/seed", body))
    assert signed.status == 200, signed.body
    assert signed.json()["requestContext"]["authorizer"]["iam"]["accessKey"] == ACCESS_KEY
    assert project.invocations() == ["POST /infer/{name}"]


# ---- JWT


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer(AUDIENCE) as started:
        yield started


@pytest.fixture
def jwt_gateway(start_gateway: GatewayFactory, issuer: Issuer) -> LocalGateway:
    return start_gateway(DataPlaneAuth="JWT", JwtIssuer=issuer.url, JwtAudience=f"{AUDIENCE},other-client")


def test_a_valid_token_reaches_the_function_with_its_claims_as_strings(
    jwt_gateway: LocalGateway, issuer: Issuer
) -> None:
    token = issuer.token(groups=["admin", "ops"])

    response = send(jwt_gateway, "POST", "/infer/seed", b"{}", {"Authorization": f"Bearer {token}"})

    assert response.status == 200, response.body
    authorizer = response.json()["requestContext"]["authorizer"]["jwt"]
    claims = authorizer["claims"]
    assert (claims["sub"], claims["aud"], claims["iss"]) == ("user-1", AUDIENCE, issuer.url)
    assert claims["exp"].isdigit()
    assert claims["groups"] == "[admin ops]"
    assert authorizer["scopes"] is None


def test_the_issuers_keys_are_discovered_once_and_cached(jwt_gateway: LocalGateway, issuer: Issuer) -> None:
    issuer.requests.clear()

    statuses = [
        send(jwt_gateway, "GET", f"/call/{i}", headers={"Authorization": issuer.token()}).status
        for i in range(3)
    ]

    assert statuses == [200, 200, 200]  # a bare token is accepted too
    assert issuer.requests == ["/.well-known/openid-configuration", "/jwks"]


def test_a_token_for_a_client_id_in_the_audience_is_accepted(
    jwt_gateway: LocalGateway, issuer: Issuer
) -> None:
    token = issuer.token(aud=None, client_id="other-client")

    response = send(jwt_gateway, "GET", "/anything", headers={"Authorization": f"Bearer {token}"})

    assert response.status == 200, response.body


OTHER_KEY = new_rsa_key()


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        pytest.param(lambda i: i.token(lifetime=timedelta(minutes=-1)), "expired", id="expired"),
        pytest.param(lambda i: i.token(aud="someone-else"), "aud", id="another audience"),
        pytest.param(lambda i: i.token(iss="https://evil.example.com"), "iss", id="another issuer"),
        pytest.param(lambda i: i.token(key=OTHER_KEY), "invalid", id="a signature by another key"),
        pytest.param(lambda i: i.token(kid="k2"), "kid", id="an unknown key id"),
        pytest.param(lambda i: i.token(algorithm="HS256"), "alg", id="an HMAC token"),
        pytest.param(
            lambda i: i.token(nbf=datetime.now(UTC) + timedelta(minutes=5)), "not valid yet", id="nbf"
        ),
        pytest.param(lambda i: "not-a-jwt", "not a JWT", id="garbage"),
        pytest.param(lambda i: i.token(exp=float("inf")), "invalid", id="exp infinite"),
        pytest.param(lambda i: i.token(exp=float("nan")), "invalid", id="exp not a number"),
        pytest.param(lambda i: i.token(exp="tomorrow"), "invalid", id="exp a word"),
        pytest.param(lambda i: i.token(exp=-(10**30)), "expired", id="exp hugely negative"),
        pytest.param(lambda i: i.token(nbf=float("inf")), "invalid", id="nbf infinite"),
        pytest.param(lambda i: i.token(nbf=10**30), "not valid yet", id="nbf 10^30"),
        pytest.param(lambda i: i.token(iat=10**30), "not valid yet", id="iat 10^30"),
        pytest.param(lambda i: i.token(iat=float("-inf")), "invalid", id="iat minus infinity"),
    ],
)
def test_a_token_api_gateway_would_refuse_is_unauthorized(
    jwt_gateway: LocalGateway,
    issuer: Issuer,
    project: EchoProject,
    make_token: Callable[[Issuer], str],
    reason: str,
) -> None:
    response = send(
        jwt_gateway, "POST", "/infer/seed", b"{}", {"Authorization": f"Bearer {make_token(issuer)}"}
    )

    assert response.status == 401
    assert response.json() == {"message": "Unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert reason in response.headers["WWW-Authenticate"]
    assert project.invocations() == []


def test_a_token_valid_until_far_beyond_year_9999_is_accepted(
    jwt_gateway: LocalGateway, issuer: Issuer
) -> None:
    """API Gateway only compares exp with now: a huge one is a long-lived token, not an error."""
    response = send(
        jwt_gateway, "GET", "/anything", headers={"Authorization": f"Bearer {issuer.token(exp=10**30)}"}
    )

    assert response.status == 200, response.body
    assert response.json()["requestContext"]["authorizer"]["jwt"]["claims"]["exp"] == str(10**30)


def test_no_token_is_unauthorized(jwt_gateway: LocalGateway, project: EchoProject) -> None:
    response = send(jwt_gateway, "POST", "/infer/seed", b"{}")

    assert (response.status, response.json()) == (401, {"message": "Unauthorized"})
    assert project.invocations() == []


def test_a_route_with_scopes_wants_one_of_them_in_the_token(
    jwt_gateway: LocalGateway, issuer: Issuer
) -> None:
    without = send(jwt_gateway, "GET", "/scoped", headers={"Authorization": issuer.token(scope="maas/read")})
    with_scope = send(
        jwt_gateway, "GET", "/scoped", headers={"Authorization": issuer.token(scope="maas/read maas/admin")}
    )

    assert (without.status, without.json()) == (403, {"message": "Forbidden"})
    assert with_scope.status == 200, with_scope.body
    assert with_scope.json()["requestContext"]["authorizer"]["jwt"]["scopes"] == ["maas/read", "maas/admin"]


def test_registry_like_iam_routes_stay_on_iam_when_the_data_plane_uses_jwt(
    jwt_gateway: LocalGateway, issuer: Issuer
) -> None:
    response = send(jwt_gateway, "GET", "/admin/items", headers={"Authorization": f"Bearer {issuer.token()}"})

    assert response.status == 403


# ---- the project's stack: template.yaml, moto, credentials from the process


class Stacks:
    """One embedded stack at a time (moto keeps its state per process), restarted when the parameter
    overrides a test asks for change."""

    def __init__(self) -> None:
        self._running: LocalStack | None = None
        self._parameters: dict[str, str] = {}

    def get(self, **parameters: str) -> LocalStack:
        if self._running is None or parameters != self._parameters:
            self.close()
            self._running = LocalStack(port=0, embedded=True, parameters=parameters).start()
            self._parameters = parameters
        return self._running

    def close(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.close()


@pytest.fixture(scope="module")
def stacks(isolated_module_env: pytest.MonkeyPatch) -> Iterator[Stacks]:
    pool = Stacks()
    try:
        yield pool
    finally:
        pool.close()


def signed_by_process(method: str, url: str, body: bytes = b"") -> dict[str, str]:
    """Signed with the keys the embedded store put in the environment, as any SDK client there would."""
    credentials = botocore.session.get_session().get_credentials()
    assert credentials is not None
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


def test_an_unsigned_call_to_a_registry_route_on_the_local_stack_is_forbidden(stacks: Stacks) -> None:
    response = send(stacks.get().url, "GET", "/registry/models")

    assert response.status == 403
    assert response.json() == {"message": "Forbidden"}


def test_a_signed_call_to_a_registry_route_on_the_local_stack_is_served(stacks: Stacks) -> None:
    url = stacks.get().url

    response = send(
        url, "GET", "/registry/models", headers=signed_by_process("GET", f"{url}/registry/models")
    )

    assert response.status == 200, response.body
    assert response.json() == {"models": []}


def test_the_data_plane_of_the_default_stack_is_open(stacks: Stacks) -> None:
    assert send(stacks.get().url, "GET", "/v2/health/live").status == 200


def test_the_banner_says_which_routes_need_what_and_how_to_sign(stacks: Stacks) -> None:
    banner = stacks.get().banner()

    assert "AWS_IAM (SigV4-signed): 18 routes under /registry/models" in banner
    assert f'curl -s --aws-sigv4 "aws:amz:{REGION}:execute-api" --user testing:testing' in banner


def test_a_parameter_override_puts_the_project_data_plane_behind_iam(stacks: Stacks) -> None:
    if "DataPlaneAuth" not in load_template(ROOT / "template.yaml").parameters:
        pytest.skip("template.yaml has no DataPlaneAuth parameter yet")
    url = stacks.get(DataPlaneAuth="AWS_IAM").url

    unsigned = send(url, "GET", "/v2/health/live")
    signed = send(url, "GET", "/v2/health/live", headers=signed_by_process("GET", f"{url}/v2/health/live"))

    assert (unsigned.status, unsigned.json()) == (403, {"message": "Forbidden"})
    assert signed.status == 200, signed.body


def test_a_lambda_authorizer_route_is_refused_since_the_local_gateway_cannot_run_it(
    project: EchoProject, isolated_env: pytest.MonkeyPatch
) -> None:
    template = project.template()
    custom = RouteAuthorization("CUSTOM", "TokenFunction")
    routes = [replace(route, authorization=custom) for route in template.routes]

    with gateway_starter(project.root) as start:
        response = send(
            start(template, routes=routes), "GET", "/admin/items", headers={"Authorization": "allow"}
        )

    assert (response.status, response.json()) == (500, {"message": "Internal Server Error"})
    assert project.invocations() == []
