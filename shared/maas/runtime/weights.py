"""How a session holds its weights, and how much memory that takes (decision 0022).

"prepacked" is onnxruntime's default: at session creation each kernel that can copies its weights into the
layout it computes fastest from (anonymous memory, about 1x the weights), and the file is let go. "mapped"
(`session.disable_prepacking`) leaves the external data memory-mapped from the load folder: the session opens
in milliseconds and the weights are file pages, which the kernel can drop and read again rather than kill
the process. Measured on a 2.9 GiB chain of fp32 MatMuls (46 x 4096^2, onnxruntime 1.32, 2 vCPUs): creation
3.6-4.4 s prepacked against 0.01 s mapped, peak RSS 1.02x the weights either way, batch-1 runs alike,
batch-32 runs 1.2-2x faster prepacked. Quantized kernels (MatMulNBits) compute from their packed layout only:
SmolLM2 int4 decoded 1.1 tokens/s mapped against 21.7 prepacked, so a quantized version is never mapped by
the rule.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

from maas.registry.manifest import Manifest
from maas.runtime.providers import CPU
from maas.runtime.session_options import SessionConfig

WeightLoading = Literal["mapped", "prepacked"]
# The session config entry that keeps weights mapped: nothing is prepacked, so nothing is copied.
DISABLE_PREPACKING = ("session.disable_prepacking", "1")
# Peak resident memory of a prepacked load per byte of graph files: 1.04-1.06 measured with external data (the
# packed copies, and the mapped file while a kernel copies from it), 1.23 with the weights inside an 800 MB
# graph file (its initializers are copied out of the parsed file); the rest covers the arena rounding up.
PREPACKED_PEAK_PER_BYTE = 1.25
# A mapped load touches every weight page in its warm-up; it holds no copy beside them.
MAPPED_PEAK_PER_BYTE = 1.0


def graph_bytes(manifest: Manifest) -> int:
    """The graph and its external data: what a load writes to its folder and the session reads."""
    return sum(manifest.artifact(path).bytes for path in manifest.graph_files)


def runs_on_cpu(config: SessionConfig) -> bool:
    """Whether the session's weights stay in host memory: with CUDA first they go to the device, and how
    the host would have held them is moot."""
    return not config.providers or config.providers[0] == CPU


def ruled_weight_loading(manifest: Manifest, config: SessionConfig, mapped_from_bytes: int) -> WeightLoading:
    """The manifest's choice when it makes one; else mapped on the CPU from `mapped_from_bytes` of graph
    files (MAAS_MAPPED_WEIGHTS_BYTES), prepacked below it, on a GPU, and for a quantized version."""
    if manifest.weight_loading is not None:
        return manifest.weight_loading
    if may_map(manifest, config) and graph_bytes(manifest) >= mapped_from_bytes:
        return "mapped"
    return "prepacked"


def may_map(manifest: Manifest, config: SessionConfig) -> bool:
    """Whether the rule may map this version's weights: on the CPU, and unquantized (quantized kernels run
    20-35x slower from unpacked weights)."""
    return runs_on_cpu(config) and manifest.quantization is None


def peak_resident_bytes(manifest: Manifest, loading: WeightLoading) -> int:
    """The resident memory a load is expected to reach: its graph files, times what prepacking adds."""
    per_byte = MAPPED_PEAK_PER_BYTE if loading == "mapped" else PREPACKED_PEAK_PER_BYTE
    return math.ceil(graph_bytes(manifest) * per_byte)


def with_weight_loading(config: SessionConfig, loading: WeightLoading) -> SessionConfig:
    """`config` opening sessions whose weights are held as `loading` says."""
    entries = tuple(entry for entry in config.config_entries if entry[0] != DISABLE_PREPACKING[0])
    if loading == "mapped":
        entries += (DISABLE_PREPACKING,)
    return replace(config, config_entries=entries)


def weight_loading_of(config: SessionConfig) -> WeightLoading:
    return "mapped" if DISABLE_PREPACKING in config.config_entries else "prepacked"
