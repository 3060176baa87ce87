"""What a batch job's input becomes, whatever its format: chunks of rows batched for the model.

A row is one input tensor without its batch dimension. The formats are read by their own modules, each
into RowChunks: jsonl (maas.service.job_jsonl), csv (maas.service.job_csv) and npy (maas.service.job_npy),
from the byte stream that maas.service.job_streams cuts into lines. A bad line becomes that line's error; a
file that cannot be read as its format at all raises MalformedJobInput, which fails the job. Nothing holds
more than one chunk of rows in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from maas.datatypes import BY_V2, Datatype
from maas.errors import InvalidInput, MaasError, PayloadTooLarge
from maas.signature import Signature

# What makes one row (not the whole file) unusable: a bad value, or a text element over MAAS_MAX_STRING_BYTES.
ROW_ERRORS = (InvalidInput, PayloadTooLarge)

# One row: an array per input name, each without the batch dimension.
Row = dict[str, npt.NDArray[Any]]


# Where a message that names an input line holds the line's number (AtLine.template).
LINE_FIELD = "{line}"


@dataclass(frozen=True, slots=True)
class AtLine:
    """A job's error that names an input line (npy: row), kept apart from its wording: a shard numbers
    its lines from 1, and the merge, which knows where the shard starts, tells it with the input's number."""

    # The message with LINE_FIELD where the line's number goes.
    template: str
    # As the reader counted it: from 1 in the bytes it read (npy: the global row).
    line: int

    def text(self, first_line: int = 1) -> str:
        """The message, the line numbered as in a reading that began at line `first_line` of the input."""
        return self.template.replace(LINE_FIELD, str(self.line + first_line - 1))


class MalformedJobInput(InvalidInput):
    """The input file as a whole cannot be read as its format (not a single line's problem); `at`: the line
    it names, if it names one."""

    def __init__(self, message: str, *, at: AtLine | None = None) -> None:
        super().__init__(message)
        self.at = at

    @classmethod
    def at_line(cls, template: str, line: int) -> MalformedJobInput:
        """The error `template` tells (LINE_FIELD where the line's number goes) of line `line`."""
        at = AtLine(template, line)
        return cls(at.text(), at=at)


class JobInputChanged(MaasError, status=409):
    """The input object is not the one the job began with: it was replaced while the job ran."""


@dataclass(slots=True)
class RowBatch:
    """Rows that stack into one run: their positions in the chunk, and one array per input."""

    positions: list[int]
    inputs: dict[str, npt.NDArray[Any]]


@dataclass(slots=True)
class RowChunk:
    """Consecutive rows of the input: `lines[i]` is row i's 1-based line (or npy row) number, and `errors`
    the failed rows' messages by position, without their line (the output line and the status add it)."""

    lines: list[int]
    batches: list[RowBatch] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)

    def fail(self, position: int, message: str) -> None:
        """The row at `position` gets no output but this error."""
        self.errors[position] = message


class RowGroups:
    """Rows decoded one by one, grouped by their shapes, so that rows which agree still run as one batch."""

    def __init__(self) -> None:
        self._groups: dict[tuple[tuple[int, ...], ...], tuple[list[int], list[Row]]] = {}

    def add(self, position: int, row: Row) -> None:
        positions, rows = self._groups.setdefault(tuple(array.shape for array in row.values()), ([], []))
        positions.append(position)
        rows.append(row)

    def batches(self) -> list[RowBatch]:
        return [
            RowBatch(positions, {name: np.stack([row[name] for row in rows]) for name in rows[0]})
            for positions, rows in self._groups.values()
        ]


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One input's row: its name, datatype, and shape without the batch dimension (-1 is any size)."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def check(self, shape: Sequence[int], where: str) -> None:
        if len(shape) != len(self.shape) or any(
            want >= 0 and want != got for want, got in zip(self.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"{where}: expected a row of shape {list(self.shape)} (-1 = any size), got {list(shape)}"
            )


def row_specs(model: str, signature: Signature) -> list[RowSpec]:
    """Each input's row: its shape without the batch dimension, which must be -1 (or 1) for a job."""
    specs = []
    for spec in signature.inputs:
        if not spec.shape or spec.shape[0] not in (-1, 1):
            raise MalformedJobInput(
                f"model '{model}': input '{spec.name}' has shape {spec.shape}; batch jobs need a leading "
                "batch dimension of -1 (or 1)"
            )
        specs.append(RowSpec(spec.name, BY_V2[spec.datatype], tuple(spec.shape[1:])))
    return specs


def single_row_spec(model: str, signature: Signature, input_format: str) -> RowSpec:
    """The one input's row, for the formats (csv, npy) that cannot name their inputs."""
    specs = row_specs(model, signature)
    if len(specs) != 1:
        raise MalformedJobInput(
            f"input.{input_format}: model '{model}' has {len(specs)} inputs "
            f"{[s.name for s in specs]}; {input_format} jobs need a single-input model, "
            "use jsonl with one object per line"
        )
    return specs[0]


def max_rows_per_run(signature: Signature, wanted: int) -> int:
    """A model whose batch dimension is fixed at 1 takes one row per run."""
    return 1 if any(spec.shape[:1] == [1] for spec in signature.inputs) else wanted
