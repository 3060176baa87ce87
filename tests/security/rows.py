"""Table tests over one shared setup: every row runs, and a failure names its row.

A bucket and a published model cost far more than the check each row makes, so a table whose rows do not
disturb one another runs in one test over one setup. `Rows` keeps that as strict as one test per row:

    rows = Rows()
    for location in HOSTILE_LOCATIONS:
        with rows.case(location):
            ...  # the row's checks, exactly as a test of its own would make them
    rows.assert_all_passed()

A failing row (an assert, a pytest.raises that saw nothing or the wrong error, an unexpected exception) is
recorded under its name and the next row still runs; the test then fails listing every failed row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SHOWN_NAME_CHARS = 60


class Rows:
    def __init__(self) -> None:
        self.failed: list[str] = []

    @contextmanager
    def case(self, name: object) -> Iterator[None]:
        """Run one row's checks; a failure is recorded under `name` (its repr, cut short), not raised."""
        try:
            yield
        except (Exception, pytest.fail.Exception) as error:
            self.failed.append(f"{repr(name)[:SHOWN_NAME_CHARS]}: {type(error).__name__}: {error}")

    def assert_all_passed(self) -> None:
        assert not self.failed, f"{len(self.failed)} row(s) failed:\n" + "\n".join(self.failed)
