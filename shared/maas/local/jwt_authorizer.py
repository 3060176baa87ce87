"""Bearer-token checks for JWT routes, as an HTTP API JWT authorizer makes them.

API Gateway takes the token from the authorizer's identity source (with or without "Bearer "),
checks its RSA signature against the issuer's keys (found through
{issuer}/.well-known/openid-configuration -> jwks_uri), then `iss`, `aud` (or `client_id` when
there is no `aud`), `exp`, `nbf` and `iat`, and, when the route lists scopes, that the token's
`scope` or `scp` holds one of them. Each issuer's discovery document is read once and its key set is
cached by PyJWT (re-read after five minutes, or when a token names a key it does not hold).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from maas.local.sam import JwtConfiguration

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
# API Gateway verifies RSA signatures only.
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
FETCH_TIMEOUT_SECONDS = 5.0
JWKS_LIFESPAN_SECONDS = 300.0
BEARER_PREFIX = "bearer "
UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden"


class JwtRejectedError(Exception):
    """A request a JWT route refuses: 401 for a missing or invalid token, 403 for missing scopes.
    `reason` says why without repeating the token; API Gateway puts it in WWW-Authenticate."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def message(self) -> str:
        return UNAUTHORIZED if self.status == 401 else FORBIDDEN


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    scopes: tuple[str, ...] | None

    def authorizer_context(self) -> dict[str, Any]:
        """requestContext.authorizer.jwt of a payload-2.0 event: HTTP APIs hand every claim over as a
        string (numbers as digits, lists as "[a b]"), and `scopes` only when the route requires some."""
        return {
            "claims": {name: _claim_text(value) for name, value in self.claims.items()},
            "scopes": list(self.scopes) if self.scopes is not None else None,
        }


def bearer_token(value: str | None) -> str | None:
    """The token of an identity source value: "Bearer <token>" or the bare token."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.lower().startswith(BEARER_PREFIX):
        text = text[len(BEARER_PREFIX) :].strip()
    return text or None


class JwtAuthorizer:
    """Verifies tokens for any number of issuers; thread-safe, one key-set client per issuer."""

    def __init__(
        self,
        *,
        fetch_timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
        jwks_lifespan_seconds: float = JWKS_LIFESPAN_SECONDS,
    ) -> None:
        self._timeout = fetch_timeout_seconds
        self._lifespan = jwks_lifespan_seconds
        self._clients: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    def verify(self, token: str, configuration: JwtConfiguration, scopes: Sequence[str]) -> VerifiedToken:
        """The token's claims if API Gateway would accept it on a route requiring `scopes` (any one of)."""
        issuer = configuration.issuer
        if issuer is None:
            raise JwtRejectedError(401, "the authorizer's issuer has no local value (set the parameter)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise JwtRejectedError(401, "the token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in RSA_ALGORITHMS:
            raise JwtRejectedError(401, f"the token's alg must be one of {', '.join(RSA_ALGORITHMS)}")
        if not header.get("kid"):
            raise JwtRejectedError(401, "the token has no kid header")
        try:
            signing_key = self._keys(issuer).get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=[str(algorithm)],
                issuer=issuer,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise JwtRejectedError(401, "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise JwtRejectedError(401, "the token is not valid yet (nbf or iat)") from None
        except jwt.InvalidIssuerError:
            raise JwtRejectedError(401, "the token's iss is not the authorizer's issuer") from None
        except jwt.PyJWKClientConnectionError as exc:
            logger.warning("JWT issuer %s: cannot fetch its keys (%s)", issuer, exc)
            raise JwtRejectedError(401, "the issuer's signing keys cannot be fetched") from None
        except jwt.PyJWKClientError:
            raise JwtRejectedError(401, "the token's kid is not one of the issuer's keys") from None
        except jwt.InvalidTokenError as exc:
            raise JwtRejectedError(401, f"the token is invalid ({type(exc).__name__})") from None
        _check_audience(claims, configuration.audience)
        return VerifiedToken(claims, _granted_scopes(claims, scopes) if scopes else None)

    def _keys(self, issuer: str) -> jwt.PyJWKClient:
        with self._lock:
            client = self._clients.get(issuer)
            if client is None:
                client = jwt.PyJWKClient(
                    self._jwks_uri(issuer), cache_jwk_set=True, lifespan=self._lifespan, timeout=self._timeout
                )
                self._clients[issuer] = client
            return client

    def _jwks_uri(self, issuer: str) -> str:
        """The jwks_uri of the issuer's OpenID discovery document, as API Gateway finds it."""
        url = issuer.rstrip("/") + DISCOVERY_PATH
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                document = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.warning("JWT issuer %s: cannot read %s (%s)", issuer, url, exc)
            raise JwtRejectedError(401, "the issuer's discovery document cannot be read") from None
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            logger.warning("JWT issuer %s: %s has no jwks_uri", issuer, url)
            raise JwtRejectedError(401, "the issuer's discovery document has no jwks_uri")
        return jwks_uri


def _check_audience(claims: Mapping[str, Any], audience: Sequence[str]) -> None:
    presented = claims.get("aud", claims.get("client_id"))
    values = presented if isinstance(presented, list) else [presented]
    if not set(audience) & {str(v) for v in values if v is not None}:
        raise JwtRejectedError(401, "the token's aud (or client_id) is not one of the authorizer's audience")


def _granted_scopes(claims: Mapping[str, Any], required: Sequence[str]) -> tuple[str, ...]:
    raw = claims.get("scope", claims.get("scp"))
    held = raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []
    if not set(held) & set(required):
        raise JwtRejectedError(403, f"the token holds none of the route's scopes ({' '.join(required)})")
    return tuple(held)


def _claim_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
