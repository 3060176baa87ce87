"""The readings the budgets stand on, from this very process: its resident memory, the memory it may use,
and the files it maps."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from maas.runtime.process_memory import machine_memory_bytes, mapped_file_bytes, resident_bytes, status_bytes

MiB = 1024 * 1024


def test_touching_new_pages_grows_the_resident_memory_read_from_proc() -> None:
    before = resident_bytes()
    pages = np.ones(64 * MiB, dtype=np.uint8)  # written, so every page is resident

    grown = resident_bytes() - before

    assert 48 * MiB <= grown <= 96 * MiB
    peak = status_bytes("VmHWM")
    assert peak is not None and peak >= resident_bytes()
    del pages


def test_the_memory_this_process_may_use_is_known_and_more_than_it_holds() -> None:
    limit = machine_memory_bytes()

    assert limit is not None and limit > resident_bytes()


def test_a_mapped_file_counts_whole_for_as_long_as_it_is_mapped(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "unmapped.bin").write_bytes(bytes(8192))
    path = folder / "weights.bin"
    path.write_bytes(bytes(3 * MiB))
    with path.open("rb") as file:
        mapping = mmap.mmap(file.fileno(), 4096, prot=mmap.PROT_READ)  # one page of it

    assert mapped_file_bytes(folder) == 3 * MiB
    assert mapped_file_bytes(tmp_path / "elsewhere") == 0

    mapping.close()
    assert mapped_file_bytes(folder) == 0
