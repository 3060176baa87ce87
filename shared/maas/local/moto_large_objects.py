"""moto's S3, taught to hold multi-GB objects: the embedded store of `make serve`, tests and benchmarks.

Why this exists (getmoto/moto#2789). moto 5.2.6 keeps each object in a SpooledTemporaryFile, on disk past
5 MiB, yet:
- every GET reads the whole object into memory: `S3Response.get_object` answers `key.value`
  (moto/s3/responses.py:2097), which reads the whole file (moto/s3/models.py:202-207), and a ranged GET slices
  that copy afterwards (`_handle_range_header`, responses.py:1800 and 1839). Sixteen parallel 16 MiB ranged
  GETs of a 3 GB object ask for 48 GB;
- `FakeMultipart.complete` concatenates the parts into a bytearray and returns `bytes(total)`
  (models.py:476-519), and the default full-object checksum keeps one more copy (models.py:588);
- `FakeKey.etag` hashes the shared file without the key's lock (models.py:281-291), so the first GETs of a
  new object, in parallel, race on its file position;
- moto's Flask app runs in debug mode (moto/moto_server/werkzeug_app.py:398), where Flask ties a closure to
  each request that reads its body (flask/wrappers.py:202-210, debughelpers.attach_enctype_error_multidict):
  every request, body included, is cyclic garbage until a full collection. A 3 GB upload in 16 MiB parts
  held 2.3 GB of old part bodies;
- UploadPart neither checks nor answers an `x-amz-checksum-*` header unless `x-amz-sdk-checksum-algorithm`
  names it (`_get_checksum`, responses.py:2386-2392): ChecksumSHA256 on a part was silently ignored.

Measured for issue 19 on a 3 GB object in 16 MiB parts (ChecksumSHA256 on each, completed with If-None-Match),
moto in a process of its own: its peak RSS per phase (VmHWM, reset through /proc/<pid>/clear_refs) above its
RSS when the phase began, and MB/s on a shared 2-core machine, so only the ratios mean much (busier runs of
the patched server gave 300-430 MB/s ranged and 290-690 whole).

| moto server process | multipart upload, 16 parts at a time | 16 parallel 16 MiB ranged GETs | whole GET |
|---|---|---|---|
| stock 5.2.6 | peak 8.0 GB, 109 MB/s (completion 14 s) | +2.6 GB, 7.1 MB/s | +3.1 GB, 665 MB/s |
| patched | peak 0.95 GB, 180 MB/s (completion 5 s) | +0.05 GB, 1030 MB/s | +0, 970 MB/s |

The patched upload's peak is its 16 requests in flight (werkzeug and moto copy each 16 MiB body a few
times), whatever the object's size.

What changes, and nothing else: GET and HEAD answered over HTTP read the object through `KeyFileContent`
(os.pread on a duplicate descriptor: moto's own range logic slices only the range, a whole GET is streamed);
a multipart completion copies the parts chunk by chunk into the new object's file (moto's checks, ETag and
checksums), then frees the parts' files; ThreadedMotoServer's Flask apps leave debug mode; `FakeKey.etag`
hashes under the key's lock; UploadPart checks each supplied `x-amz-checksum-*` (400 BadDigest, as S3 does)
and answers it. In-process `mock_aws` keeps moto's bytes bodies (botocore's stub reads the body as bytes).

It reaches into moto 5.2.6's internals, pinned in pyproject.toml: `install_large_object_support` raises for
any other version, so an upgrade cannot silently drop it. To upgrade, re-read the lines above in the new
version, adapt, then move the pin and PATCHED_MOTO_VERSION together.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import import_module
from importlib.util import find_spec
from typing import IO, Any

from maas.errors import ConfigurationError

PATCHED_MOTO_VERSION = "5.2.6"
# One read per chunk when streaming or assembling an object; 1 MiB keeps a request's memory flat.
CHUNK_BYTES = 1024 * 1024
CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")

# True while moto builds an answer that werkzeug will send: only then may a key's value be read lazily.
_answering_over_http: ContextVar[bool] = ContextVar("maas_moto_answering_over_http", default=False)
_install_lock = threading.Lock()
_installed = threading.Event()


def install_large_object_support() -> None:
    """Patch moto's S3 (process-wide, once); raises ConfigurationError unless moto is the patched version."""
    import moto

    if moto.__version__ != PATCHED_MOTO_VERSION:
        raise ConfigurationError(
            f"maas.local.moto_large_objects patches moto {PATCHED_MOTO_VERSION}'s S3 internals, got moto "
            f"{moto.__version__}: re-check the patched lines (see the module's docstring) in this version, "
            f"then move the pin in pyproject.toml and PATCHED_MOTO_VERSION together"
        )
    with _install_lock:
        if _installed.is_set():
            return
        from moto.moto_server import threaded_moto_server
        from moto.s3.models import FakeKey, FakeMultipart
        from moto.s3.responses import S3Response

        patches: tuple[tuple[object, str, Callable[[Any], Any]], ...] = (
            (threaded_moto_server, "create_backend_app", _without_debug_mode),
            (FakeKey, "value", _lazy_value),
            (FakeKey, "etag", _etag_under_lock),
            (FakeMultipart, "complete", lambda _stock: _complete_streaming),
            (S3Response, "get_object", _answering_lazily),
            (S3Response, "head_object", _answering_lazily),
            (S3Response, "upload_part", _checking_part_checksums),
        )
        for owner, name, patch in patches:
            setattr(owner, name, patch(vars(owner)[name]))
        _installed.set()


def is_installed() -> bool:
    return _installed.is_set()


class KeyFileContent:
    """A key's bytes as moto's GET path uses them (len, slices, iteration), read with os.pread on a duplicate
    of the key's descriptor (or one opened on a kept body's file): concurrent requests never share a file
    position, and only the bytes asked for are read."""

    __slots__ = ("_key", "_size")

    def __init__(self, key: Any) -> None:
        self._key = key
        self._size = int(key.size)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, span: slice) -> bytes:
        start, stop, step = span.indices(self._size)
        if step != 1:
            raise ValueError(f"a key's content is sliced with step 1, got {step}")
        with _duplicate_descriptor(self._key) as descriptor:
            return _read_exactly(descriptor, start, max(stop - start, 0))

    def __iter__(self) -> Iterator[bytes]:
        with _duplicate_descriptor(self._key) as descriptor:
            for offset in range(0, self._size, CHUNK_BYTES):
                yield _read_exactly(descriptor, offset, min(CHUNK_BYTES, self._size - offset))


@dataclass(frozen=True, slots=True)
class AssembledObject:
    """A completed multipart object already written to the spooled file its key will own."""

    buffer: IO[bytes]
    size: int


def _on_disk(key: Any) -> bool:
    # Under the rollover size the value is a BytesIO: small, read as moto does; fileno() would roll it over.
    # A body kept in the data folder (maas.local.stored_body.StoredBody) is on disk.
    buffer = key._value_buffer
    return bool(getattr(buffer, "_rolled", not isinstance(buffer, io.BytesIO)))


@contextmanager
def _duplicate_descriptor(key: Any) -> Iterator[int]:
    # The duplicate keeps the (unlinked) file open if the key is deleted or replaced while it is being read.
    # A body kept in the data folder (maas.local.stored_body.StoredBody) holds no descriptor: it opens one.
    with key.lock:
        buffer = key._value_buffer
        opener = getattr(buffer, "open_descriptor", None)
        if opener is not None:
            descriptor = opener()
        else:
            buffer.flush()  # bytes still in the file object's buffer are invisible to os.pread
            descriptor = os.dup(buffer.fileno())
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def _read_exactly(descriptor: int, offset: int, length: int) -> bytes:
    pieces = []
    while length > 0:
        piece = os.pread(descriptor, length, offset)
        if not piece:
            raise OSError(f"moto's object file ends at {offset}, short of its recorded size")
        pieces.append(piece)
        offset += len(piece)
        length -= len(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _key_chunks(key: Any) -> Iterable[bytes]:
    return KeyFileContent(key) if _on_disk(key) else (key.value,)


def _lazy_value(stock: property) -> property:
    def read(key: Any) -> Any:
        if _answering_over_http.get() and _on_disk(key):
            return KeyFileContent(key)
        return stock.fget(key)  # type: ignore[misc]

    def write(key: Any, new_value: Any) -> None:
        if isinstance(new_value, AssembledObject):
            key._value_buffer.close()
            key._value_buffer = new_value.buffer
            key.contentsize = new_value.size
        else:
            stock.fset(key, new_value)  # type: ignore[misc]

    return property(read, write)


def _etag_under_lock(stock: property) -> property:
    def etag(key: Any) -> str:
        with key.lock:
            return str(stock.fget(key))  # type: ignore[misc]

    return property(etag)


def _answering_lazily(stock: Callable[..., Any]) -> Callable[..., Any]:
    from flask import has_request_context

    @functools.wraps(stock)
    def answer(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not has_request_context():  # in-process mock_aws: botocore's stub wants the body as bytes
            return stock(self, *args, **kwargs)
        token = _answering_over_http.set(True)
        try:
            return stock(self, *args, **kwargs)
        finally:
            _answering_over_http.reset(token)

    return answer


def _without_debug_mode(stock: Callable[[str], Any]) -> Callable[[str], Any]:
    @functools.wraps(stock)
    def create_backend_app(service: str) -> Any:
        app = stock(service)
        app.debug = False
        return app

    return create_backend_app


def _checking_part_checksums(stock: Callable[[Any], Any]) -> Callable[[Any], Any]:
    from moto.s3.exceptions import S3ClientError
    from moto.s3.utils import compute_checksum

    @functools.wraps(stock)
    def upload_part(self: Any) -> Any:
        supplied = {
            algorithm: value
            for algorithm in CHECKSUM_ALGORITHMS
            if (value := self.headers.get(f"x-amz-checksum-{algorithm.lower()}"))
        }
        for algorithm, value in supplied.items():
            if compute_checksum(self.body, algorithm).decode() != value:
                raise S3ClientError(
                    "BadDigest", f"The {algorithm} you specified did not match the calculated checksum."
                )
        status, headers, body = stock(self)
        headers.update({f"x-amz-checksum-{algorithm.lower()}": v for algorithm, v in supplied.items()})
        return status, headers, body

    return upload_part


def _complete_streaming(multipart: Any, body: Iterator[tuple[int, str]]) -> tuple[Any, str, Any]:
    """FakeMultipart.complete with the object never in memory: moto's checks in moto's order, its ETag
    ("<md5 of the parts' md5s>-N") and checksums, but the parts are copied chunk by chunk into the new key's
    spooled file, and their own files freed once it is whole."""
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.s3.utils import compute_checksum
    from moto.settings import S3_UPLOAD_PART_MIN_SIZE, get_s3_default_key_buffer_size

    parts = []
    md5s = bytearray()
    last = None
    for number, listed_etag in body:
        part = multipart.parts.get(number)
        part_etag = None
        if part is not None:
            part_etag = part.etag.replace('"', "")
        if part is None or part_etag != listed_etag.replace('"', ""):
            raise InvalidPart()
        if last is not None and last.contentsize < S3_UPLOAD_PART_MIN_SIZE:
            raise EntityTooSmall()
        md5s.extend(bytes.fromhex(part_etag))
        parts.append(part)
        last = part
    if not parts:
        raise MalformedXML

    algorithm = multipart.metadata.get("x-amz-checksum-algorithm") or "CRC64NVME"
    checksum_type = multipart.metadata.get("x-amz-checksum-type") or (
        "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    )
    composite = checksum_type == "COMPOSITE"
    whole = RunningChecksum(algorithm)
    part_checksums = bytearray()
    assembled: IO[bytes] = tempfile.SpooledTemporaryFile(get_s3_default_key_buffer_size())  # noqa: SIM115
    size = 0
    for part in parts:
        running = RunningChecksum(algorithm) if composite else whole
        for chunk in _key_chunks(part):
            assembled.write(chunk)
            running.update(chunk)
            size += len(chunk)
        if composite:
            part_checksums.extend(running.digest())
    assembled.flush()
    multipart.completed_part_sizes = [part.size for part in parts]
    multipart.dispose()  # nothing reads a completed upload's parts again; their files would double the disk

    if composite:
        checksum = (checksum_type, compute_checksum(bytes(part_checksums), algorithm).decode(), len(parts))
    else:
        checksum = (checksum_type, base64.b64encode(whole.digest()).decode(), 1)
    return (
        AssembledObject(assembled, size),
        f"{hashlib.md5(bytes(md5s), usedforsecurity=False).hexdigest()}-{len(parts)}",
        checksum,
    )


class RunningChecksum:
    """moto's `compute_checksum(body, algorithm, encode_base64=False)`, fed in chunks: the same algorithms
    and the same fallbacks (CRC32 when crc32c or awscrt is missing)."""

    def __init__(self, algorithm: str) -> None:
        self._crc = 0
        self._hash: Any = None
        self._crc_update: Callable[[bytes, int], int] = binascii.crc32
        self._crc_bytes = 4
        if algorithm == "SHA1":
            self._hash = hashlib.sha1(usedforsecurity=False)
        elif algorithm == "CRC32C" and find_spec("crc32c") is not None:
            self._crc_update = import_module("crc32c").crc32c
        elif algorithm == "CRC64NVME" and find_spec("awscrt") is not None:
            self._crc_update, self._crc_bytes = import_module("awscrt.checksums").crc64nvme, 8
        elif algorithm not in ("CRC32", "CRC32C", "CRC64NVME"):
            self._hash = hashlib.sha256(usedforsecurity=False)

    def update(self, chunk: bytes) -> None:
        if self._hash is not None:
            self._hash.update(chunk)
        else:
            self._crc = self._crc_update(chunk, self._crc)

    def digest(self) -> bytes:
        if self._hash is not None:
            return bytes(self._hash.digest())
        return self._crc.to_bytes(self._crc_bytes, "big")
