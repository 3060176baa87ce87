"""The settings a model load's budgets read: the function's memory and temp space, and the size from which
weights stay mapped."""

from __future__ import annotations

import pytest

from maas.config import (
    DEFAULT_MAPPED_WEIGHTS_BYTES,
    DEFAULT_MEMORY_PARAMETER,
    LAMBDA_MAX_VCPUS,
    Settings,
    lambda_vcpus,
)
from maas.errors import ConfigurationError

MiB = 1024 * 1024


def test_the_budgets_read_lambdas_memory_and_the_templates_ephemeral_storage_in_mb() -> None:
    settings = Settings.from_env(
        {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008", "MAAS_EPHEMERAL_STORAGE_MB": "10240"}
    )

    assert settings.function_memory_bytes == 3008 * MiB
    assert settings.ephemeral_storage_bytes == 10240 * MiB


def test_unset_sizes_leave_the_budgets_to_the_machine() -> None:
    settings = Settings.from_env({})

    assert settings.function_memory_bytes is None
    assert settings.ephemeral_storage_bytes is None
    assert settings.mapped_weights_bytes == DEFAULT_MAPPED_WEIGHTS_BYTES == 1 << 30
    # Every function's memory parameter, until its app names its own.
    assert settings.memory_parameter == DEFAULT_MEMORY_PARAMETER
    assert all(
        name in DEFAULT_MEMORY_PARAMETER
        for name in ("InferMemorySize", "BatchMemorySize", "GenerateMemorySize")
    )


def test_the_mapped_weights_threshold_is_set_in_bytes() -> None:
    assert Settings.from_env({"MAAS_MAPPED_WEIGHTS_BYTES": "0"}).mapped_weights_bytes == 0
    assert Settings.from_env({"MAAS_MAPPED_WEIGHTS_BYTES": "5000000"}).mapped_weights_bytes == 5_000_000


@pytest.mark.parametrize("name", ["MAAS_EPHEMERAL_STORAGE_MB", "MAAS_MAPPED_WEIGHTS_BYTES"])
def test_a_size_that_is_no_number_stops_the_function_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{name}: expected a number, got 'lots'"):
        Settings.from_env({name: "lots"})


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1"])
@pytest.mark.parametrize(
    "name",
    [
        "MAAS_EPHEMERAL_STORAGE_MB",
        "MAAS_MAPPED_WEIGHTS_BYTES",
        "MAAS_CACHE_BYTES",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    ],
)
def test_a_size_that_is_not_a_finite_non_negative_number_stops_the_function_naming_it(
    name: str, value: str
) -> None:
    with pytest.raises(
        ConfigurationError, match=f"{name}: expected a finite, non-negative number, got '{value}'"
    ):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("memory_mb", "threads"),
    [("128", 1), ("1769", 1), ("2048", 1), ("2654", 2), ("3008", 2), ("3538", 2), ("5308", 3), ("10240", 6)],
)
def test_on_lambda_the_threads_are_the_whole_vcpus_the_memory_buys(memory_mb: str, threads: int) -> None:
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory_mb}).intra_op_threads == threads


def test_a_thread_count_that_is_set_wins_over_lambdas_memory_and_off_lambda_none_means_every_cpu() -> None:
    on_lambda = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048", "MAAS_INTRA_OP_THREADS": "4"}

    assert Settings.from_env(on_lambda).intra_op_threads == 4
    assert Settings.from_env({}).intra_op_threads is None
    assert lambda_vcpus(100 * 1024 * 1024 * 1024) == LAMBDA_MAX_VCPUS


def test_spinning_is_off_unless_asked_for() -> None:
    assert Settings.from_env({}).intra_op_spinning is False
    assert Settings.from_env({"MAAS_INTRA_OP_SPINNING": "1"}).intra_op_spinning is True
