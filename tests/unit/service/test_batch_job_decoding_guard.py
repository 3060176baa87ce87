"""What a batch job does with an exception while reading its input: storage failures stay transient (the
queue delivers the job again), anything else that escapes a decoder fails the job with a status."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from botocore.exceptions import ReadTimeoutError

from maas.errors import Unavailable
from maas.service.job_inputs import StorageStream, csv_header_setting, decoding_guarded
from maas.service.job_layout import JobLocation
from maas.service.job_rows import MalformedJobInput, RowChunk

JOB = JobLocation.from_path("seed-mlp/job-1", input_format="npy")


class FailingBody(io.BytesIO):
    """A response body whose connection drops after the first read."""

    def __init__(self, failure: Exception) -> None:
        super().__init__(b"first")
        self.failure = failure
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise self.failure
        return super().read(size)


@pytest.mark.parametrize(
    "failure", [ReadTimeoutError(endpoint_url="http://s3"), ConnectionResetError(104, "reset by peer")]
)
def test_a_read_that_fails_in_transit_is_a_transient_storage_failure(failure: Exception) -> None:
    stream = StorageStream(FailingBody(failure), "reading the job input")

    assert stream.read(5) == b"first"
    with pytest.raises(Unavailable, match="reading the job input: storage unreachable"):
        stream.read(5)


def test_an_unexpected_decoding_error_fails_the_job_after_the_rows_already_decoded() -> None:
    def chunks() -> Iterator[RowChunk]:
        yield RowChunk(lines=[1])
        raise IndexError("a decoder bug, 123.456")

    guarded = decoding_guarded(JOB, chunks())

    assert next(guarded).lines == [1]
    with pytest.raises(MalformedJobInput) as raised:
        next(guarded)
    assert raised.value.message == (
        "input.npy: expected a readable npy file, got one that could not be decoded (IndexError)"
    )


@pytest.mark.parametrize("failure", [Unavailable("storage"), MalformedJobInput("input.npy: bad")])
def test_maas_errors_pass_the_guard_unchanged(failure: Exception) -> None:
    def chunks() -> Iterator[RowChunk]:
        raise failure
        yield RowChunk(lines=[])  # pragma: no cover - makes this a generator

    with pytest.raises(type(failure)) as raised:
        next(decoding_guarded(JOB, chunks()))
    assert raised.value is failure


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [({}, None), ({"csv-header": "true"}, True), ({"csv-header": " False "}, False), ({"other": "x"}, None)],
)
def test_the_csv_header_setting_comes_from_the_input_objects_metadata(
    metadata: dict[str, str], expected: bool | None
) -> None:
    assert csv_header_setting(metadata) is expected


@pytest.mark.parametrize(
    ("value", "shown"), [("yes", "'yes'"), ("1", "'1'"), ("x" * 40, "a value of 40 characters")]
)
def test_a_csv_header_setting_that_is_not_true_or_false_is_refused(value: str, shown: str) -> None:
    with pytest.raises(MalformedJobInput, match=f"expected true or false, got {shown}"):
        csv_header_setting({"csv-header": value})
