"""What every model load does around opening its session: the session configuration the settings ask for,
the scratch-space check before any download, and the load's log line and metric."""

from __future__ import annotations

import shutil
import tempfile
import time

from maas.config import Settings
from maas.errors import Unavailable
from maas.observability import MetricUnit, logger, metrics
from maas.registry.manifest import Manifest
from maas.runtime.loaded_model import SessionConfig, disk_bytes_needed
from maas.runtime.providers import CUDA, select_providers

# Temp space kept free beyond a model's own files: onnxruntime and the runtime write small files too.
DISK_HEADROOM_BYTES = 64 * 1024 * 1024


def session_config(settings: Settings, *, config_entries: tuple[tuple[str, str], ...] = ()) -> SessionConfig:
    """Providers (MAAS_PROVIDER), threads, graph optimization and warm-up as the settings say."""
    return SessionConfig(
        providers=tuple(select_providers(settings.provider)),
        intra_op_threads=settings.intra_op_threads,
        graph_optimization=settings.graph_optimization,
        warmup=settings.warmup,
        required_provider=CUDA if settings.provider == "cuda" else None,
        config_entries=config_entries,
    )


def check_scratch_space(manifest: Manifest) -> None:
    """Unavailable (503) before any download when the temp folder cannot hold the graph's files while its
    session opens; cached models hold no disk, so only a load needs it."""
    needed = disk_bytes_needed(manifest) + DISK_HEADROOM_BYTES
    scratch = tempfile.gettempdir()
    free = shutil.disk_usage(scratch).free
    if free < needed:
        raise Unavailable(
            f"model '{manifest.name}' v{manifest.version}: expected {needed} free bytes in {scratch}, "
            f"got {free}"
        )


def report_model_load(manifest: Manifest, providers: list[str], started: float, **details: object) -> None:
    """The ModelLoadMs metric and a "model loaded" log line for a load begun at `started` (perf_counter)."""
    load_ms = (time.perf_counter() - started) * 1000
    metrics.add_metric(name="ModelLoadMs", unit=MetricUnit.Milliseconds, value=load_ms)
    logger.info(
        "model loaded",
        extra={
            "model": manifest.name,
            "version": manifest.version,
            "bytes": manifest.total_bytes,
            "providers": providers,
            "load_ms": round(load_ms, 1),
            **details,
        },
    )
