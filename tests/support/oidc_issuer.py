"""A real OIDC issuer on 127.0.0.1 for JWT tests: a discovery document, a key set, and tokens signed by
its RSA key, as an identity provider serves them to API Gateway's JWT authorizer.

`running_issuer()` starts one; `Issuer.token()` makes a token that the issuer's configuration accepts
unless told otherwise (another key, kid, algorithm, lifetime or claims), so each test states only
what it changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import RSAAlgorithm

from tests.support.http import answer_json

KEY_ID = "k1"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
# What an HS256 token is signed with: the issuer publishes no such key, so no authorizer accepts one.
SHARED_SECRET = "a-shared-secret-of-at-least-32-bytes!"


def new_rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issuer:
    """An issuer at `url` whose tokens name `audience`; `requests` records the paths it was asked for."""

    url: str
    key: RSAPrivateKey
    audience: str
    requests: list[str] = field(default_factory=list)

    def token(
        self,
        *,
        key: RSAPrivateKey | None = None,
        kid: str = KEY_ID,
        algorithm: str = "RS256",
        lifetime: timedelta = timedelta(minutes=5),
        **claims: Any,
    ) -> str:
        """A signed token: iss, aud, sub, iat and exp as the issuer sets them, then `claims` (None drops)."""
        now = datetime.now(UTC)
        payload = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "user-1",
            "iat": now,
            "exp": now + lifetime,
            **claims,
        }
        signing_key: Any = key or self.key
        if algorithm.startswith("HS"):
            signing_key = SHARED_SECRET
        return jwt.encode(
            {k: v for k, v in payload.items() if v is not None}, signing_key, algorithm, headers={"kid": kid}
        )


@contextmanager
def running_issuer(audience: str) -> Iterator[Issuer]:
    """An issuer serving its discovery document and key set (one RS256 key, KEY_ID) until the block ends."""
    key = new_rsa_key()
    public_jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public_jwk.update(kid=KEY_ID, use="sig", alg="RS256")
    issuer = Issuer(url="", key=key, audience=audience)

    class OidcHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.requests.append(self.path)
            documents = {
                DISCOVERY_PATH: {"issuer": issuer.url, "jwks_uri": f"{issuer.url}{JWKS_PATH}"},
                JWKS_PATH: {"keys": [public_jwk]},
            }
            document = documents.get(self.path)
            answer_json(self, 200 if document is not None else 404, document)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OidcHandler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
