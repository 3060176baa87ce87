"""The `latest` pointer: one GET resolves a bare name, and it always names what a listing would.

Every row of a history ends with the pointer naming the newest ready version (or gone when none is), and a
bare name resolving to the same version with and without it: the pointer is a faster answer, never another
one. Races are played out with two registries over the same bucket, a writer's step run at the exact moment
another writer is between two of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from maas.errors import NotFound
from maas.registry import ModelRef, ModelRegistry
from maas.registry.admin import RegistryAdmin
from maas.registry.latest_pointer import pointer_state
from tests.support.aws import TEST_BUCKET
from tests.support.registry import publish

NAME = "m"


def pointed(registry: ModelRegistry) -> int | None:
    state = pointer_state(registry.s3, TEST_BUCKET, registry.latest_key(NAME), what="pointer")
    return state.version if state is not None else None


def listed(registry: ModelRegistry) -> int | None:
    try:
        return registry.latest_listed_version(NAME)
    except NotFound:
        return None


def assert_pointer_agrees_with_listing(registry: ModelRegistry) -> None:
    assert pointed(registry) == listed(registry)


# Each history as steps ("publish", "delete <n>", "archive <n>"), and the version the pointer names after it.
HISTORIES: dict[str, tuple[list[str], int | None]] = {
    "three publishes": (["publish"] * 3, 3),
    "delete the newest": ([*["publish"] * 3, "delete 3"], 2),
    "archive the newest": ([*["publish"] * 3, "archive 3"], 2),
    "archive the two newest": ([*["publish"] * 3, "archive 3", "archive 2"], 1),
    "delete an older one": ([*["publish"] * 3, "delete 1"], 3),
    "delete every version": ([*["publish"] * 2, "delete 2", "delete 1"], None),
    "archive every version": ([*["publish"] * 2, "archive 2", "archive 1"], None),
    "publish after deleting the newest": ([*["publish"] * 2, "delete 2", "publish"], 3),
}


def play(admin: RegistryAdmin, step: str) -> None:
    action, _, version = step.partition(" ")
    if action == "publish":
        publish(admin.registry)
    elif action == "delete":
        admin.delete_version(NAME, int(version))
    else:
        admin.archive(NAME, int(version))


@pytest.mark.parametrize("history", HISTORIES, ids=str)
def test_the_pointer_names_the_newest_ready_version_after_every_history(
    registry: ModelRegistry, history: str
) -> None:
    steps, expected = HISTORIES[history]
    admin = RegistryAdmin(registry)
    for step in steps:
        play(admin, step)
    assert pointed(registry) == expected
    assert_pointer_agrees_with_listing(registry)
    if expected is None:
        with pytest.raises(NotFound):
            registry.resolve(ModelRef(NAME))
    else:
        assert registry.resolve(ModelRef(NAME)) == expected
        assert registry.resolve(ModelRef(NAME, alias="latest")) == expected


def test_a_bare_name_costs_one_get_of_the_pointer_and_its_manifest_is_not_read_again(
    registry: ModelRegistry, s3: Any
) -> None:
    publish(registry)
    publish(registry)
    calls: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3", lambda model, params, **_: calls.append(f"{model.name} {params['Key']}")
    )

    version = registry.resolve(ModelRef(NAME))
    manifest = registry.manifest(NAME, version)

    assert (version, manifest.version) == (2, 2)
    # The default alias and the pointer, read at once; no listing, no metadata, no second manifest read.
    assert sorted(calls) == ["GetObject models/m/aliases/production.json", "GetObject models/m/latest.json"]


def test_a_pinned_version_is_read_once_without_a_head(registry: ModelRegistry, s3: Any) -> None:
    publish(registry)
    calls: list[str] = []
    s3.meta.events.register("provide-client-params.s3", lambda model, **_: calls.append(model.name))

    assert registry.resolve(ModelRef(NAME, version=1)) == 1
    assert registry.manifest(NAME, 1).version == 1
    assert calls == ["GetObject"]
    with pytest.raises(NotFound, match="model 'm' version 7: not found"):
        registry.resolve(ModelRef(NAME, version=7))


def test_a_set_default_alias_still_wins_over_the_pointer(registry: ModelRegistry) -> None:
    publish(registry)
    publish(registry)
    RegistryAdmin(registry).set_alias(NAME, "production", 1)
    assert registry.resolve(ModelRef(NAME)) == 1
    assert registry.resolve(ModelRef(NAME, alias="latest")) == 2


def test_a_registry_from_before_the_pointer_falls_back_to_listing_and_can_be_repaired(
    registry: ModelRegistry, s3: Any
) -> None:
    for _ in range(3):
        publish(registry)
    RegistryAdmin(registry).archive(NAME, 3)
    s3.delete_object(Bucket=TEST_BUCKET, Key=registry.latest_key(NAME))

    assert registry.resolve(ModelRef(NAME)) == 2
    assert RegistryAdmin(registry).repair_latest(NAME) == 2
    assert pointed(registry) == 2


def test_a_pointer_left_on_a_deleted_version_is_repaired(registry: ModelRegistry, s3: Any) -> None:
    """A writer that died between deleting the newest version's folder and moving the pointer."""
    publish(registry)
    publish(registry)
    registry.retire_version_folder(NAME, 2)
    assert pointed(registry) == 2
    assert RegistryAdmin(registry).repair_latest(NAME) == 1
    assert registry.resolve(ModelRef(NAME)) == 1


def test_a_deleter_that_dies_before_removing_a_file_leaves_the_pointer_on_a_version_that_serves(
    registry: ModelRegistry, s3: Any
) -> None:
    """The pointer leaves the version first: a delete killed when it starts removing files never leaves a
    bare name resolving to a version whose files are gone."""
    publish(registry)
    publish(registry)

    def killed(**_: Any) -> None:
        raise RuntimeError("the deleter was killed")

    for operation in ("DeleteObject", "DeleteObjects"):
        s3.meta.events.register(f"before-call.s3.{operation}", killed)
    with pytest.raises(RuntimeError):
        RegistryAdmin(registry).delete_version(NAME, 2)

    assert pointed(registry) == 1
    assert registry.resolve(ModelRef(NAME)) == 1


def test_a_pointer_copied_from_another_model_is_refused(registry: ModelRegistry, s3: Any) -> None:
    publish(registry, name="other")
    publish(registry)
    copied = s3.get_object(Bucket=TEST_BUCKET, Key=registry.latest_key("other"))
    s3.put_object(
        Bucket=TEST_BUCKET,
        Key=registry.latest_key(NAME),
        Body=copied["Body"].read(),
        Metadata=copied["Metadata"],
    )
    with pytest.raises(Exception, match="expected the manifest of this version") as refused:
        registry.resolve(ModelRef(NAME))
    assert getattr(refused.value, "status", None) == 500


def before_pointer_write(
    s3: Any, registry: ModelRegistry, version: int, act: Callable[[], object]
) -> list[bool]:
    """Run `act` once, just before the first write of the pointer to `version` is sent (after its writer read
    the pointer it compares against). The list it returns holds True once `act` ran."""
    ran: list[bool] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if ran or params.get("Key") != registry.latest_key(NAME):
            return
        if params.get("Metadata", {}).get("maas-version") == str(version):
            ran.append(True)
            act()

    s3.meta.events.register("provide-client-params.s3.PutObject", hook)
    return ran


def test_two_publishers_racing_never_move_the_pointer_back(registry: ModelRegistry, s3: Any) -> None:
    """The publisher of v2 reads the pointer (v1) and, before its write, v3 is published and moves it: v2's
    write loses the compare-and-swap, and on reading again it finds a newer version and stops."""
    publish(registry)
    raced = before_pointer_write(s3, registry, 2, lambda: publish(ModelRegistry(s3, TEST_BUCKET)))
    assert publish(registry) == 2
    assert raced and pointed(registry) == 3
    assert registry.resolve(ModelRef(NAME)) == 3


@pytest.mark.parametrize("action", ["delete 2", "archive 2"])
def test_a_delete_or_archive_racing_the_publish_of_the_same_version_leaves_the_pointer_off_it(
    registry: ModelRegistry, s3: Any, action: str
) -> None:
    """v2 is committed, then deleted (or archived) while its publisher is about to move the pointer, so that
    writer finds the pointer still on v1 and leaves it: the publisher's check after its move sees v2 gone (or
    archived) and moves the pointer back."""
    publish(registry)
    admin = RegistryAdmin(ModelRegistry(s3, TEST_BUCKET))
    raced = before_pointer_write(s3, registry, 2, lambda: play(admin, action))
    publish(registry)
    assert raced and pointed(registry) == 1
    assert registry.resolve(ModelRef(NAME)) == 1


def test_a_publish_racing_the_delete_of_the_newest_version_ends_on_the_new_one(
    registry: ModelRegistry, s3: Any
) -> None:
    """Deleting v2 (the pointer's) lists v1 as the newest ready one; before its write, v3 is published and
    moves the pointer: the delete's write loses, and on reading again it finds the pointer off v2, and
    stops."""
    publish(registry)
    publish(registry)
    raced = before_pointer_write(s3, registry, 1, lambda: publish(ModelRegistry(s3, TEST_BUCKET)))
    RegistryAdmin(registry).delete_version(NAME, 2)
    assert raced and pointed(registry) == 3
    assert registry.resolve(ModelRef(NAME)) == 3
