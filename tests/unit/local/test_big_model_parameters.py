"""The local stack takes a big model's deploy settings as `sam deploy --parameter-overrides` does (make serve
reads them from MAAS_LOCAL_PARAMETERS): EphemeralStorageSize reaches the process as MAAS_EPHEMERAL_STORAGE_MB,
the one environment every local function shares, so the local stack refuses a model whose files would not fit
Lambda's /tmp. The memory parameters become each function's context.memory_limit_in_mb; the memory budget
itself reads the machine locally, since one process cannot tell each function its own memory."""

from __future__ import annotations

import os

import pytest

from maas.local.cloudformation import IntrinsicResolver
from maas.local.stack import LocalStack, parse_parameter_overrides
from tests.support.aws import remove_shell_settings

STORAGE_VARIABLE = "MAAS_EPHEMERAL_STORAGE_MB"


@pytest.mark.parametrize(
    ("overrides", "storage_mb", "infer_memory_mb"),
    [("", "2048", 2048), ("EphemeralStorageSize=10240 InferMemorySize=10240", "10240", 10240)],
    ids=["defaults", "Lambda's largest"],
)
def test_the_local_stack_gives_its_functions_the_storage_and_memory_asked_for(
    monkeypatch: pytest.MonkeyPatch, overrides: str, storage_mb: str, infer_memory_mb: int
) -> None:
    remove_shell_settings(monkeypatch)
    parameters = parse_parameter_overrides(overrides)

    with LocalStack(port=0, embedded=True, parameters=parameters) as stack:
        told = os.environ.get(STORAGE_VARIABLE)
        resolver = IntrinsicResolver.for_template(stack.template, stack.parameters)
        memory = {
            function_id: resolver.resolve_number(stack.template.functions[function_id].memory_size, 0)
            for function_id in ("InferFunction", "AsyncFunction")
        }

    assert told == storage_mb
    assert memory == {"InferFunction": infer_memory_mb, "AsyncFunction": infer_memory_mb}
    assert STORAGE_VARIABLE not in os.environ  # the stack gives the process its environment back
