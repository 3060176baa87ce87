"""The integration tier: the local stack over real HTTP, against an embedded moto server.

The tier manages the environment itself. The root conftest's per-test `aws_credentials` would remove
the variables a module-wide stack has set (its endpoint, and the template's MAAS_* for the function),
so it is replaced here: every AWS and maas variable of the developer's shell is removed for the whole
module instead, the stack sets dummy credentials for its moto server, and both are restored afterwards.
No test in this tier can reach a real account or bucket.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

AWS_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "POWERTOOLS_SERVICE_NAME",
)


def _isolate(env: pytest.MonkeyPatch) -> None:
    for name in [*AWS_VARIABLES, *(n for n in os.environ if n.startswith("MAAS_"))]:
        env.delenv(name, raising=False)


@pytest.fixture(scope="module", autouse=True)
def isolated_module_env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as env:
        _isolate(env)
        yield env


@pytest.fixture(autouse=True)
def aws_credentials() -> None:
    """Overrides the root fixture of the same name; see the module docstring."""


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    _isolate(monkeypatch)
    return monkeypatch


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


HttpCall = Callable[..., HttpResult]


@pytest.fixture
def http() -> HttpCall:
    return send


def send(method: str, url: str, body: bytes | None = None, content_type: str | None = None) -> HttpResult:
    """One real HTTP request; error statuses are results, not exceptions."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResult(error.code, dict(error.headers), error.read())
