"""How a session is opened: providers, threads, graph optimization, warm-up and config entries."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import onnxruntime as ort

from maas.config import GraphOptimization

# Whether onnxruntime's idle intra-op threads spin for work (its default) or sleep. Off unless asked for:
# measured here, text-bert at batch 32 on 2 shared vCPUs ran 2.2x slower with its two threads spinning
# (decision 0026); on Lambda a spinning thread burns the CPU share a working one needs.
INTRA_OP_SPINNING = "session.intra_op.allow_spinning"

# A graph whose files are smaller than this runs one intra-op thread: its ops are too small to share out.
# Measured on 2 vCPUs (decision 0026): digits-resnet (65 KB) took 44 us at batch 1 on one thread against 73
# on two, and the same at batch 32; text-bert (0.65 MB) gained from two at batch 32 (18.5 ms against 26.9).
SMALL_GRAPH_BYTES = 256 << 10

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    providers: tuple[str, ...]
    # None: one intra-op thread per CPU this process may use.
    intra_op_threads: int | None = None
    graph_optimization: GraphOptimization = "all"
    warmup: bool = True
    # MAAS_PROVIDER=cuda: a session onnxruntime quietly opened on the CPU instead (a GPU build on a host
    # without a usable GPU or CUDA libraries) is refused rather than served slowly.
    required_provider: str | None = None
    # Idle intra-op threads spin for work instead of sleeping (MAAS_INTRA_OP_SPINNING).
    spinning: bool = False
    # onnxruntime session config entries (key, value); one named here wins over the fields above.
    config_entries: tuple[tuple[str, str], ...] = ()

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = _OPTIMIZATION_LEVELS[self.graph_optimization]
        options.intra_op_num_threads = self.intra_op_threads or usable_cpus()
        options.log_severity_level = 3
        entries = dict(self.config_entries)
        entries.setdefault(INTRA_OP_SPINNING, "1" if self.spinning else "0")
        for key, value in entries.items():
            options.add_session_config_entry(key, value)
        return options

    def for_graph(self, graph_bytes: int) -> SessionConfig:
        """This configuration for one model whose graph files add up to `graph_bytes`: one intra-op thread
        for a small graph (SMALL_GRAPH_BYTES), whatever the thread count, as is for any other."""
        if graph_bytes < SMALL_GRAPH_BYTES:
            return replace(self, intra_op_threads=1)
        return self


def usable_cpus() -> int:
    """CPUs this process may run on: Lambda and containers restrict affinity below os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)
