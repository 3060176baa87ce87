"""The functions' AWS clients can be renewed under every holder at once, as a copy restored from a SnapStart
snapshot needs: a new client (credentials resolved again, no pooled connection) behind the same object."""

from __future__ import annotations

from typing import Any

from maas.aws_clients import renew_clients, s3_client
from maas.registry import ModelRegistry
from tests.support.aws import TEST_BUCKET
from tests.support.registry import publish


def test_a_holder_keeps_working_through_a_new_client_after_renewal(s3: Any) -> None:
    client = s3_client()
    registry = ModelRegistry(client, TEST_BUCKET)
    publish(registry)
    meta_before = client.meta

    assert renew_clients() >= 1

    assert client.meta is not meta_before
    assert registry.versions("m") == [1]


def test_renewed_clients_resolve_credentials_again(s3: Any, monkeypatch: Any) -> None:
    client: Any = s3_client()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "restored-copy-key")

    renew_clients()

    credentials = client._request_signer._credentials  # botocore offers no public reader
    assert credentials.access_key == "restored-copy-key"
