"""The embedded store's S3 and SQS state, kept in the data folder so that `make serve` finds its models,
aliases and jobs again after a restart (docs/architecture/decisions/0027-a-local-store-that-persists.md).

Layout, under `<data folder>/store/`:
- `state.json`: the format and the moto version that wrote the rest; anything else is refused, not guessed;
- `s3.pickle`: moto's S3 backends (buckets, keys and their versions, metadata, notification configurations),
  each key's body replaced by the name of its file;
- `objects/<uuid>`: one file per object body, written once and never rewritten (a PUT makes a new key);
- `sqs.pickle`: moto's SQS backends (queues and their messages).

S3 is saved after every mutating request and before its response is sent, under the lock that also makes
conditional writes atomic (maas.local.store_requests), so nothing acknowledged is lost; when that request
queued a bucket notification, SQS is saved with it (a job input acknowledged is a job that will run). Other
SQS traffic (receives, deletes) is saved about once a second and at stop: a crash can lose the last second
of it or deliver a message twice, which the functions' idempotency absorbs (a job or an event handled twice
writes the same outputs). Multipart uploads in progress are not kept: after a restart their completion
fails with NoSuchUpload.

Bodies are never read into memory, and no file stays open per object: a kept key's body is a `StoredBody`,
which opens its file only for the read asked of it (the number of open files does not grow with the number
of objects). A saved key whose body is already a file of the folder is not copied again; a restored key
whose file is missing is dropped with a warning naming it, and the rest of the store is used. The pickles
are this folder's own (written by this process's code), so loading them trusts nothing a stranger wrote.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from maas.errors import MaasError
from maas.local.stored_body import StoredBody

logger = logging.getLogger(__name__)

STATE_FORMAT = 1
STORE_FOLDER = "store"
STATE_FILE = "state.json"
S3_FILE = "s3.pickle"
SQS_FILE = "sqs.pickle"
OBJECTS_FOLDER = "objects"
RESET_COMMAND = "maas serve --reset"
COPY_CHUNK_BYTES = 1024 * 1024
# Rewrites of the SQS snapshot are attempted this many times when a request changes a queue mid-pickle.
SNAPSHOT_ATTEMPTS = 5


class StoreStateError(MaasError, status=500):
    """The saved state cannot be used: unreadable, or written by another format or moto version."""


def store_folder(data_dir: Path) -> Path:
    return data_dir / STORE_FOLDER


def reset_store(data_dir: Path) -> bool:
    """Forget the saved store (objects, aliases, jobs, queues); returns whether there was one."""
    folder = store_folder(data_dir)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def write_atomically(path: Path, content: bytes) -> None:
    """`path` holds `content` whole or keeps what it held: temp file, fsync, rename, fsync the folder."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class BodyFile:
    """A key's body as a name in `objects/`: what the pickle holds in place of the bytes."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class StoreState:
    """Saves moto's S3 and SQS backends into a data folder and restores them from it."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = store_folder(data_dir)
        self.objects = self.folder / OBJECTS_FOLDER
        self._s3_lock = threading.Lock()
        self._sqs_lock = threading.Lock()
        self._last_sqs: bytes | None = None
        self._saved_bodies: set[str] = set()

    def restore(self) -> bool:
        """Load the saved backends into moto (after a reset of moto's state); returns whether any was saved.
        Raises StoreStateError naming the folder and the reset command when the state cannot be used."""
        if not self.folder.exists():
            return False
        self._check_format()
        from moto.s3.models import s3_backends
        from moto.sqs.models import sqs_backends

        for file, backends in ((S3_FILE, s3_backends), (SQS_FILE, sqs_backends)):
            path = self.folder / file
            if not path.exists():
                continue
            try:
                with open(path, "rb") as saved:
                    unpickler = _BodyUnpickler(saved, self.objects)
                    restored = unpickler.load()
                for account, region, backend in restored:
                    backends[account][region] = backend
            except Exception as exc:
                raise self._unusable(f"{file}: {type(exc).__name__}: {exc}") from None
            if unpickler.missing:
                _drop_keys_without_body([backend for _, _, backend in restored], unpickler.missing)
        kept = self.objects.iterdir() if self.objects.exists() else iter(())
        self._saved_bodies = {path.name for path in kept}
        self._last_sqs = None
        return True

    def save_s3(self) -> None:
        """Write every S3 backend's metadata (and each new body's file) before a mutation is acknowledged."""
        from moto.s3.models import s3_backends

        with self._s3_lock:
            self._prepare()
            buffer = io.BytesIO()
            pickler = _BodyPickler(buffer, self.objects)
            pickler.dump(list(s3_backends.iter_backends()))
            if pickler.written:
                # The new bodies' names must be durable before the pickle that names them replaces the old.
                _fsync_folder(self.objects)
            write_atomically(self.folder / S3_FILE, buffer.getvalue())
            # Bodies of keys deleted or replaced since the last save: no saved state names them any more.
            for name in self._saved_bodies - pickler.referenced:
                (self.objects / name).unlink(missing_ok=True)
            self._saved_bodies = pickler.referenced

    def save_sqs(self) -> None:
        """Write the SQS backends when they changed since the last save."""
        from moto.sqs.models import sqs_backends

        with self._sqs_lock:
            self._prepare()
            content = _snapshot(lambda: list(sqs_backends.iter_backends()))
            if content != self._last_sqs:
                write_atomically(self.folder / SQS_FILE, content)
                self._last_sqs = content

    def _prepare(self) -> None:
        if (self.folder / STATE_FILE).exists():
            return
        self.objects.mkdir(parents=True, exist_ok=True)
        write_atomically(self.folder / STATE_FILE, _state_header().encode())

    def _check_format(self) -> None:
        try:
            found = json.loads((self.folder / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise self._unusable(f"{STATE_FILE}: {type(exc).__name__}") from None
        expected = json.loads(_state_header())
        if found != expected:
            raise self._unusable(f"expected {expected}, found {found}")

    def _unusable(self, detail: str) -> StoreStateError:
        return StoreStateError(
            f"{self.folder}: the saved local store cannot be used ({detail}); start afresh with "
            f"`{RESET_COMMAND}` (or `make reset`), which deletes it"
        )


def _state_header() -> str:
    import moto

    return json.dumps({"format": STATE_FORMAT, "moto": moto.__version__}, sort_keys=True)


def _snapshot(backends: Callable[[], Iterable[Any]]) -> bytes:
    """Pickle while requests go on: a queue changed mid-pickle raises RuntimeError; the next try is taken."""
    for attempt in range(SNAPSHOT_ATTEMPTS):
        buffer = io.BytesIO()
        try:
            _BodyPickler(buffer, None).dump(list(backends()))
        except RuntimeError:
            if attempt == SNAPSHOT_ATTEMPTS - 1:
                raise
            continue
        return buffer.getvalue()
    raise AssertionError("unreachable")


def _restored_lock(kind: type[Any]) -> Any:
    return kind()


def _restored_object(kind: type[Any], state: dict[str, Any]) -> Any:
    restored = object.__new__(kind)
    restored.__dict__.update(state)
    return restored


def _restored_key(kind: type[Any], state: dict[str, Any]) -> Any:
    key = _restored_object(kind, state)
    key.lock = threading.Lock()
    return key


def _restored_dict(kind: type[Any], items: dict[Any, Any], state: dict[str, Any]) -> Any:
    # dict.update, not the subclass's __setitem__: _VersionedKeyStore's would append, keeping one version.
    restored = dict.__new__(kind)
    dict.update(restored, items)
    restored.__dict__.update(state)
    return restored


class _BodyPickler(pickle.Pickler):
    """moto's backends with locks made anew, in-progress multipart uploads left out, and each key's body
    as its file in `objects` (written here, once, for a key not saved before)."""

    def __init__(self, out: IO[bytes], objects: Path | None) -> None:
        super().__init__(out, protocol=pickle.HIGHEST_PROTOCOL)
        self._objects = objects
        self.referenced: set[str] = set()
        self.written = 0
        from moto.s3.models import FakeBucket, FakeKey, FakeMultipart
        from moto.s3.utils import _VersionedKeyStore

        self._key_type, self._bucket_type, self._multipart_type = FakeKey, FakeBucket, FakeMultipart
        self._versioned_type = _VersionedKeyStore
        self._lock_types = (type(threading.Lock()), type(threading.RLock()), threading.Condition)

    def persistent_id(self, obj: Any) -> Any:
        return ("body", obj.name) if isinstance(obj, BodyFile) else None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self._lock_types):
            return _restored_lock, (type(obj),)
        if isinstance(obj, self._key_type):
            return _restored_key, (type(obj), self._key_state(obj))
        if isinstance(obj, self._bucket_type):
            state = dict(obj.__dict__, multiparts=type(obj.multiparts)())
            return _restored_object, (type(obj), state)
        if isinstance(obj, self._multipart_type):
            # A completed upload, kept for its part sizes; its parts' files are already freed.
            return _restored_object, (type(obj), dict(obj.__dict__, parts={}))
        if isinstance(obj, self._versioned_type):
            return _restored_dict, (type(obj), dict(dict.items(obj)), dict(obj.__dict__))
        return NotImplemented

    def _key_state(self, key: Any) -> dict[str, Any]:
        state = {name: value for name, value in key.__dict__.items() if name not in ("lock", "_value_buffer")}
        if self._objects is None or key.disposed or key._value_buffer.closed:
            state["_value_buffer"] = io.BytesIO()
            return state
        name = getattr(key, "maas_body_file", None)
        if name is None:
            name = self._write_body(key)
        self.referenced.add(name)
        state["maas_body_file"] = name
        state["_value_buffer"] = BodyFile(name)
        return state

    def _write_body(self, key: Any) -> str:
        """Copy the key's body into a file of its own, then let the key read that file: its temporary file
        (memory under 5 MiB) is freed, so the body is held once."""
        assert self._objects is not None
        name = uuid.uuid4().hex
        path = self._objects / name
        with key.lock:
            source = key._value_buffer
            source.flush()
            source.seek(0)
            with open(path, "wb") as out:
                shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)
                out.flush()
                os.fsync(out.fileno())
            key._value_buffer = StoredBody(path)
            source.close()
            key.maas_body_file = name
        self.written += 1
        return name


class _BodyUnpickler(pickle.Unpickler):
    """Each body restored as a StoredBody on its file (nothing opened); the names whose file is missing are
    collected in `missing`."""

    def __init__(self, source: IO[bytes], objects: Path) -> None:
        super().__init__(source)
        self._objects = objects
        self.missing: set[str] = set()

    def persistent_load(self, pid: Any) -> Any:
        kind, name = pid
        if kind != "body":
            raise pickle.UnpicklingError(f"unknown reference {kind!r}")
        path = self._objects / name
        if not path.is_file():
            self.missing.add(name)
        return StoredBody(path)


def _drop_keys_without_body(backends: Iterable[Any], missing: set[str]) -> None:
    """Forget each restored key (version) whose body file is gone, one warning line each: one lost file
    costs that object, not the whole store. The next save writes the state without it."""
    for backend in backends:
        for bucket in backend.buckets.values():
            for name, versions in list(dict.items(bucket.keys)):
                kept = [key for key in versions if getattr(key, "maas_body_file", None) not in missing]
                for key in versions:
                    if key not in kept:
                        logger.warning(
                            "s3://%s/%s (version %s): its body file %s is missing from the saved local "
                            "store; the object is dropped",
                            bucket.name,
                            name,
                            key.version_id,
                            key._value_buffer.path,
                        )
                        key.dispose()
                if not kept:
                    dict.__delitem__(bucket.keys, name)
                elif len(kept) != len(versions):
                    dict.__setitem__(bucket.keys, name, kept)
