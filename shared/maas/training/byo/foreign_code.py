"""Running code maas does not own (the user's factory and forward, the exporter on them, onnxruntime on a
foreign graph) and reporting its failures as the model's, with what ran."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from maas.errors import MaasError
from maas.training.errors import ModelCheckFailed


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


@contextmanager
def user_code(what: str) -> Iterator[None]:
    """Code we do not own (the user's forward, the exporter on it, onnxruntime on a foreign graph) fails
    in ways no exception type list covers; any failure there is the model's, reported with what ran."""
    try:
        yield
    except MaasError:
        raise
    except Exception as exc:
        raise ModelCheckFailed(f"{what}: failed with {first_line(exc)}") from exc
