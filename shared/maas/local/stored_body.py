"""A body of the kept local store (maas.local.store_state) as moto's FakeKey holds it, without holding its
file open: the number of open files must not grow with the number of objects (one descriptor per object
failed writes past the open-files limit, and restoring more than 1,024 objects)."""

from __future__ import annotations

import io
import os
from pathlib import Path


class StoredBody:
    """A kept key's body (moto's `_value_buffer`) read from its file in `objects/` only when a read asks for
    it: seek, tell and read as moto's FakeKey uses them, and `open_descriptor` for the large-object patch's
    os.pread path. Nothing is held open between reads. Read-only: a body is never rewritten (a PUT makes a
    new key)."""

    __slots__ = ("_position", "closed", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.closed = False
        self._position = 0

    def open_descriptor(self) -> int:
        """A descriptor of its own on the body's file, for the caller to close."""
        self._check_open()
        return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size()}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def tell(self) -> int:
        self._check_open()
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        descriptor = self.open_descriptor()
        try:
            wanted = os.fstat(descriptor).st_size - self._position if size is None or size < 0 else size
            pieces = []
            while wanted > 0:
                piece = os.pread(descriptor, wanted, self._position)
                if not piece:
                    break
                pieces.append(piece)
                self._position += len(piece)
                wanted -= len(piece)
        finally:
            os.close(descriptor)
        return b"".join(pieces)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def flush(self) -> None:
        self._check_open()

    def close(self) -> None:
        self.closed = True

    def _size(self) -> int:
        return self.path.stat().st_size

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.path.name}: I/O operation on a closed body")
