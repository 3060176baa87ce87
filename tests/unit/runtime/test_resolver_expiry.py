"""Expiring every alias resolution at once (what a copy restored from a SnapStart snapshot does): the next
request resolves again whatever the TTL says, and a pinned version still survives a storage outage."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from maas.errors import Unavailable
from maas.registry import ModelRef, ModelRegistry
from maas.registry.admin import RegistryAdmin
from maas.runtime.cache import VersionResolver, expire_every_resolver
from tests.support.registry import publish


def test_an_alias_moved_within_its_ttl_is_seen_once_every_resolver_expires(registry: ModelRegistry) -> None:
    for _ in range(2):
        publish(registry)
    admin = RegistryAdmin(registry)
    admin.set_alias("m", "production", 1)
    resolvers = [
        VersionResolver(registry.resolve_target, ttl_seconds=3600, clock=lambda: 0.0) for _ in range(2)
    ]
    assert [r.resolve(ModelRef("m")).version for r in resolvers] == [1, 1]
    admin.set_alias("m", "production", 2)
    assert [r.resolve(ModelRef("m")).version for r in resolvers] == [1, 1]  # within the TTL

    assert expire_every_resolver() >= 2

    assert [r.resolve(ModelRef("m")).version for r in resolvers] == [2, 2]


def test_an_expired_pinned_version_is_still_served_when_storage_is_unreachable(
    registry: ModelRegistry, s3: Any
) -> None:
    publish(registry)
    resolver = VersionResolver(registry.resolve_target, ttl_seconds=3600, clock=lambda: 0.0)
    pinned = ModelRef("m", version=1)
    assert resolver.resolve(pinned).version == 1
    assert resolver.expire_all() == 1

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")

    s3.meta.events.register("before-call.s3", unreachable)
    assert resolver.resolve(pinned).version == 1
    with pytest.raises(Unavailable):
        resolver.resolve(ModelRef("m"))
