"""The local JWT authorizer decides as an HTTP API JWT authorizer does, token by token.

Tokens are real RS256 JWTs signed by a real OIDC issuer on 127.0.0.1 (tests.support.oidc_issuer): the
authorizer discovers its key set as API Gateway does, then checks signature, iss, aud (or client_id),
exp, nbf and iat, and the route's scopes. A refusal is a JwtRejectedError whose status is what API
Gateway answers (401 for the token, 403 for missing scopes) and whose reason names what failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from maas.local.jwt_authorizer import JwtAuthorizer, JwtRejectedError, VerifiedToken, bearer_token
from maas.local.sam import JwtConfiguration
from tests.support.oidc_issuer import Issuer, new_rsa_key, running_issuer

AUDIENCE = "maas-api"
OTHER_KEY = new_rsa_key()


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer(AUDIENCE) as started:
        yield started


@pytest.fixture
def authorizer() -> JwtAuthorizer:
    return JwtAuthorizer(fetch_timeout_seconds=2)


def configuration(issuer: Issuer, *audience: str) -> JwtConfiguration:
    return JwtConfiguration(issuer=issuer.url, audience=audience or (AUDIENCE,))


@dataclass(frozen=True)
class Refusal:
    """A token the authorizer must refuse on a route requiring `scopes`: with `status`, for `reason`."""

    make_token: Callable[[Issuer], str]
    status: int
    reason: str
    scopes: tuple[str, ...] = ()


REFUSALS = {
    "wrong issuer": Refusal(lambda i: i.token(iss="https://evil.example.com"), 401, "iss"),
    "wrong audience": Refusal(lambda i: i.token(aud="someone-else"), 401, "aud"),
    "no audience nor client_id": Refusal(lambda i: i.token(aud=None), 401, "aud"),
    "expired": Refusal(lambda i: i.token(lifetime=timedelta(minutes=-1)), 401, "expired"),
    "bad signature": Refusal(lambda i: i.token(key=OTHER_KEY), 401, "invalid"),
    "unknown key id": Refusal(lambda i: i.token(kid="k2"), 401, "kid"),
    "HMAC algorithm": Refusal(lambda i: i.token(algorithm="HS256"), 401, "alg"),
    "not yet valid": Refusal(
        lambda i: i.token(nbf=datetime.now(UTC) + timedelta(minutes=5)), 401, "not valid yet"
    ),
    "no exp": Refusal(lambda i: i.token(exp=None), 401, "invalid"),
    "not a JWT": Refusal(lambda i: "not-a-jwt", 401, "not a JWT"),
    "missing scopes": Refusal(lambda i: i.token(scope="maas/read"), 403, "scopes", scopes=("maas/admin",)),
    "no scope claim": Refusal(lambda i: i.token(), 403, "scopes", scopes=("maas/admin",)),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_token_api_gateway_would_refuse_is_refused_with_its_status_and_reason(
    authorizer: JwtAuthorizer, issuer: Issuer, case: Refusal
) -> None:
    token = case.make_token(issuer)

    with pytest.raises(JwtRejectedError) as refused:
        authorizer.verify(token, configuration(issuer), case.scopes)

    assert refused.value.status == case.status
    assert case.reason in refused.value.reason
    assert refused.value.message == ("Unauthorized" if case.status == 401 else "Forbidden")
    assert token not in refused.value.reason


def test_a_valid_token_yields_its_claims_and_no_scopes_on_a_route_without_any(
    authorizer: JwtAuthorizer, issuer: Issuer
) -> None:
    verified = authorizer.verify(issuer.token(groups=["admin", "ops"]), configuration(issuer), ())

    assert (verified.claims["sub"], verified.claims["aud"], verified.claims["iss"]) == (
        "user-1",
        AUDIENCE,
        issuer.url,
    )
    assert verified.scopes is None


ACCEPTED = {
    "aud one of several": (lambda i: i.token(), ("other-client", AUDIENCE), (), None),
    "aud a list": (lambda i: i.token(aud=["x", AUDIENCE]), (AUDIENCE,), (), None),
    "client_id instead of aud": (lambda i: i.token(aud=None, client_id=AUDIENCE), (AUDIENCE,), (), None),
    "one of the scopes in scope": (
        lambda i: i.token(scope="maas/read maas/admin"),
        (AUDIENCE,),
        ("maas/admin", "maas/write"),
        ("maas/read", "maas/admin"),
    ),
    "scopes in scp as a list": (
        lambda i: i.token(scp=["maas/admin"]),
        (AUDIENCE,),
        ("maas/admin",),
        ("maas/admin",),
    ),
    "exp far beyond year 9999": (lambda i: i.token(exp=10**30), (AUDIENCE,), (), None),
}


@pytest.mark.parametrize(
    ("make_token", "audience", "scopes", "granted"), ACCEPTED.values(), ids=ACCEPTED.keys()
)
def test_a_token_api_gateway_would_accept_is_accepted_with_the_scopes_it_holds(
    authorizer: JwtAuthorizer,
    issuer: Issuer,
    make_token: Callable[[Issuer], str],
    audience: tuple[str, ...],
    scopes: tuple[str, ...],
    granted: tuple[str, ...] | None,
) -> None:
    verified = authorizer.verify(make_token(issuer), configuration(issuer, *audience), scopes)

    assert verified.scopes == granted


def test_an_issuer_with_no_local_value_refuses_every_token(authorizer: JwtAuthorizer, issuer: Issuer) -> None:
    with pytest.raises(JwtRejectedError) as refused:
        authorizer.verify(issuer.token(), JwtConfiguration(issuer=None, audience=(AUDIENCE,)), ())

    assert (refused.value.status, refused.value.reason) == (
        401,
        "the authorizer's issuer has no local value (set the parameter)",
    )


def test_an_issuer_that_cannot_be_reached_is_a_401_not_an_error(
    authorizer: JwtAuthorizer, issuer: Issuer
) -> None:
    unreachable = JwtConfiguration(issuer="http://127.0.0.1:9", audience=(AUDIENCE,))

    with pytest.raises(JwtRejectedError) as refused:
        authorizer.verify(issuer.token(iss=unreachable.issuer), unreachable, ())

    assert (refused.value.status, refused.value.reason) == (
        401,
        "the issuer's discovery document cannot be read",
    )


def test_the_issuers_keys_are_discovered_once_per_authorizer(
    authorizer: JwtAuthorizer, issuer: Issuer
) -> None:
    issuer.requests.clear()

    for _ in range(3):
        authorizer.verify(issuer.token(), configuration(issuer), ())

    assert issuer.requests == ["/.well-known/openid-configuration", "/jwks"]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer   abc.def.ghi  ", "abc.def.ghi"),
        ("abc.def.ghi", "abc.def.ghi"),
        ("   ", None),
        (None, None),
    ],
)
def test_the_token_is_taken_with_or_without_its_bearer_prefix(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_the_event_carries_every_claim_as_a_string_as_http_apis_do() -> None:
    verified = VerifiedToken(
        claims={"sub": "u", "exp": 1700000000, "admin": True, "groups": ["a", 2], "meta": {"k": [1]}},
        scopes=("maas/admin",),
    )

    assert verified.authorizer_context() == {
        "claims": {"sub": "u", "exp": "1700000000", "admin": "true", "groups": "[a 2]", "meta": '{"k":[1]}'},
        "scopes": ["maas/admin"],
    }
