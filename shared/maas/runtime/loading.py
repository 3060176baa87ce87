"""What every model load does around opening its session: the session configuration the settings ask for,
and the load's log line and metric."""

from __future__ import annotations

import time

import onnxruntime as ort

from maas.config import Settings
from maas.observability import MetricUnit, logger, metrics
from maas.registry.manifest import Manifest
from maas.runtime.footprint import footprint_of
from maas.runtime.providers import CUDA, select_providers
from maas.runtime.session_options import SessionConfig


def session_config(settings: Settings, *, config_entries: tuple[tuple[str, str], ...] = ()) -> SessionConfig:
    """Providers (MAAS_PROVIDER), threads, graph optimization and warm-up as the settings say."""
    return SessionConfig(
        providers=tuple(select_providers(settings.provider)),
        intra_op_threads=settings.intra_op_threads,
        spinning=settings.intra_op_spinning,
        graph_optimization=settings.graph_optimization,
        warmup=settings.warmup,
        required_provider=CUDA if settings.provider == "cuda" else None,
        config_entries=config_entries,
    )


def report_model_load(
    manifest: Manifest, session: ort.InferenceSession, started: float, **details: object
) -> None:
    """The ModelLoadMs metric and a "model loaded" log line for a load begun at `started` (perf_counter),
    with how the session holds its weights and what it holds."""
    load_ms = (time.perf_counter() - started) * 1000
    footprint = footprint_of(session)
    if footprint is not None:
        details = {
            "weight_loading": footprint.weight_loading,
            "resident_bytes": footprint.resident_bytes,
            "scratch_bytes": footprint.scratch_bytes,
            **details,
        }
    metrics.add_metric(name="ModelLoadMs", unit=MetricUnit.Milliseconds, value=load_ms)
    logger.info(
        "model loaded",
        extra={
            "model": manifest.name,
            "version": manifest.version,
            "bytes": manifest.total_bytes,
            "providers": session.get_providers(),
            "load_ms": round(load_ms, 1),
            **details,
        },
    )
