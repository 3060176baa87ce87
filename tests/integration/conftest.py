"""The integration tier: the local stack over real HTTP, against an embedded moto server.

The tier manages the environment itself. The root conftest's per-test `aws_credentials` would remove
the variables a module-wide stack has set (its endpoint, and the template's MAAS_* for the function),
so it is replaced here: every AWS and maas variable of the developer's shell is removed for the whole
module instead, the stack sets dummy credentials for its moto server, and both are restored afterwards.
No test in this tier can reach a real account or bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.aws import remove_shell_settings
from tests.support.http import HttpCall, send


@pytest.fixture(scope="module", autouse=True)
def isolated_module_env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as env:
        remove_shell_settings(env)
        yield env


@pytest.fixture(autouse=True)
def aws_credentials() -> None:
    """Overrides the root fixture of the same name; see the module docstring."""


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    remove_shell_settings(monkeypatch)
    return monkeypatch


@pytest.fixture
def http() -> HttpCall:
    return send
