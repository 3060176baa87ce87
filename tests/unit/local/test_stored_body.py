"""A kept body read by path: moto's FakeKey reads it as a file, and nothing stays open between reads."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from maas.local.stored_body import StoredBody


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_reads_seeks_and_tells_as_moto_uses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"0123456789")
    body = StoredBody(path)

    assert body.read() == b"0123456789" and body.tell() == 10
    assert body.seek(2) == 2 and body.read(3) == b"234" and body.tell() == 5
    assert body.seek(-2, io.SEEK_END) == 8 and body.read(5) == b"89"
    assert body.seek(0) == 0 and body.read(None) == b"0123456789"


def test_holds_no_descriptor_between_reads(tmp_path: Path) -> None:
    paths = [tmp_path / str(index) for index in range(50)]
    for path in paths:
        path.write_bytes(b"x")
    before = open_descriptors()

    bodies = [StoredBody(path) for path in paths]
    assert [body.read() for body in bodies] == [b"x"] * len(paths)

    assert open_descriptors() == before
    descriptor = bodies[0].open_descriptor()
    try:
        assert os.pread(descriptor, 1, 0) == b"x"
    finally:
        os.close(descriptor)


def test_a_closed_body_refuses_reads(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"x")
    body = StoredBody(path)
    body.close()

    assert body.closed
    with pytest.raises(ValueError, match="closed"):
        body.read()
    assert path.exists()  # closing forgets the key's hold, never the file: a save decides what is deleted
