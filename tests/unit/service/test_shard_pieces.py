"""The pieces of a sharded job that need no model: where a line reader stands, error lines renumbered to
global lines, a Step Functions failure's message, execution names and shard keys."""

from __future__ import annotations

import io
import json

import pytest

from maas.config import Settings
from maas.service.job_layout import JobLocation
from maas.service.job_output import error_line
from maas.service.job_streams import StreamPosition, iter_lines
from maas.service.shard_layout import ShardKeys, ShardObject, execution_name, shard_object
from maas.service.sharded_jobs import MAX_FAILURE_MESSAGE, StepFailure, renumbered_lines


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 64])
def test_a_line_reader_says_how_many_lines_and_bytes_it_has_given(chunk_bytes: int) -> None:
    data = b"\xef\xbb\xbfone\r\ntwo\n\nthree"
    position = StreamPosition()
    lines = iter_lines(io.BytesIO(data), 100, chunk_bytes, position=position)

    seen = [(line, position.lines, position.bytes) for line in lines]

    assert seen == [(b"one", 1, 8), (b"two", 2, 12), (b"", 3, 13), (b"three", 4, 18)]
    assert position.bytes == len(data)


def test_a_reader_that_starts_past_byte_0_keeps_a_byte_order_mark_as_data() -> None:
    position = StreamPosition()

    lines = list(iter_lines(io.BytesIO(b"\xef\xbb\xbf[1]\n"), 100, strip_bom=False, position=position))

    assert lines == [b"\xef\xbb\xbf[1]"] and position.bytes == 7


@pytest.mark.parametrize("chunk_bytes", [1, 4, 7, 1024])
@pytest.mark.parametrize("final_newline", [True, False])
def test_error_lines_are_renumbered_and_every_other_byte_is_kept(
    chunk_bytes: int, final_newline: bool
) -> None:
    local = [
        b'{"outputs":{"output":[1.0]}}',
        error_line(2, "expected a JSON value, got an empty line"),
        b'{"outputs":{"output":["line 3: not an error"]}}',
        error_line(4, 'a message with "line 9: " in it'),
    ]
    body = b"\n".join(local) + (b"\n" if final_newline else b"")

    renumbered = b"".join(renumbered_lines(io.BytesIO(body), 99, chunk_bytes))

    expected = [
        local[0],
        error_line(101, "expected a JSON value, got an empty line"),
        local[2],
        error_line(103, 'a message with "line 9: " in it'),
    ]
    assert renumbered == b"\n".join(expected) + (b"\n" if final_newline else b"")


@pytest.mark.parametrize(
    ("cause", "message"),
    [
        (
            json.dumps({"errorMessage": "disk on fire", "errorType": "Unavailable", "stackTrace": ["x"]}),
            "disk on fire",
        ),
        ("States.Timeout: the task timed out", "States.Timeout: the task timed out"),
        ("", "no cause given"),
        (json.dumps({"errorType": "Unavailable"}), '{"errorType": "Unavailable"}'),
    ],
)
def test_a_failure_is_told_by_its_error_message_alone(cause: str, message: str) -> None:
    assert StepFailure(error="Unavailable", cause=cause).message() == message


def test_a_long_failure_message_is_cut() -> None:
    cause = json.dumps({"errorMessage": "x" * 5000})

    message = StepFailure(error="E", cause=cause).message()

    assert message == "x" * MAX_FAILURE_MESSAGE + "..."


def test_an_execution_name_is_the_job_readable_and_the_input_key_hashed() -> None:
    key = "jobs/seed-mlp/a.b_c-d/input.csv"

    name = execution_name("a.b_c-d", key)

    assert name == execution_name("a.b_c-d", key) != execution_name("a.b_c-d", key.replace(".csv", ".npy"))
    assert name.startswith("ab_c-d-") and len(name) == len("ab_c-d-") + 32
    long_name = execution_name("x" * 128, key)
    assert len(long_name) == 40 + 1 + 32 <= 80


def test_shard_keys_and_what_each_key_names() -> None:
    keys = ShardKeys.for_job(JobLocation.from_input_key("pre/jobs/m@prod/j1/input.jsonl", "pre/"))

    assert keys.plan == "pre/jobs/m@prod/j1/shards/plan.json"
    assert keys.round(2) == "pre/jobs/m@prod/j1/shards/round-2.json"
    assert [shard_object(key) for key in (keys.started(3, 70), keys.output(3, 70), keys.result(3, 70))] == [
        ShardObject(3, 70, "started"),
        ShardObject(3, 70, "output"),
        ShardObject(3, 70, "result"),
    ]
    assert shard_object(keys.failure(12, 0)) == ShardObject(12, 0, "failed")
    assert shard_object(keys.renumbered(1, 9, 41)) == ShardObject(1, 9, "renumbered", 41)
    assert shard_object(keys.renumber_failure(1, 9, 41)) == ShardObject(1, 9, "renumber_failed", 41)
    assert shard_object(keys.plan) is None and shard_object(keys.round(0)) is None


def test_the_sharding_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "MAAS_JOB_SHARD_BYTES": "1048576",
            "MAAS_PROMPT_JOB_SHARD_BYTES": "4096",
            "MAAS_JOB_SHARD_CONCURRENCY": "250",
            "MAAS_JOB_STATE_MACHINE_ARN": " arn:aws:states:us-east-1:1:stateMachine:maas-dev-jobs ",
        }
    )
    defaults = Settings.from_env({})

    assert (settings.job_shard_bytes, settings.prompt_job_shard_bytes, settings.job_shard_concurrency) == (
        1048576,
        4096,
        250,
    )
    assert settings.job_state_machine_arn == "arn:aws:states:us-east-1:1:stateMachine:maas-dev-jobs"
    assert (defaults.job_shard_bytes, defaults.prompt_job_shard_bytes, defaults.job_shard_concurrency) == (
        64 * 1024 * 1024,
        64 * 1024,
        100,
    )
    assert defaults.job_state_machine_arn == ""
