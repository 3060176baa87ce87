"""onnxruntime sessions, execution providers, the model cache, load budgets and signature checks. No HTTP
here."""

from __future__ import annotations

from maas.runtime.budgets import LoadBudget, MachineReadings
from maas.runtime.cache import CachedModel, ModelCache, VersionResolver
from maas.runtime.deadlines import Deadline
from maas.runtime.footprint import Footprint, footprint_of, session_memory_bytes, settle_footprint
from maas.runtime.loaded_model import (
    PLATFORM,
    LoadedModel,
    check_signature,
    load_model,
    signature_of,
    token_rows_per_run,
)
from maas.runtime.loading import report_model_load, session_config
from maas.runtime.providers import CUDA, select_providers
from maas.runtime.session_options import SessionConfig, usable_cpus
from maas.runtime.text import TextTokenizer
from maas.runtime.validation import check_inputs, check_requested_outputs
from maas.runtime.verified_session import open_verified_session, write_model_files
from maas.runtime.weights import DISABLE_PREPACKING, WeightLoading, graph_bytes

__all__ = [
    "CUDA",
    "DISABLE_PREPACKING",
    "PLATFORM",
    "CachedModel",
    "Deadline",
    "Footprint",
    "LoadBudget",
    "LoadedModel",
    "MachineReadings",
    "ModelCache",
    "SessionConfig",
    "TextTokenizer",
    "VersionResolver",
    "WeightLoading",
    "check_inputs",
    "check_requested_outputs",
    "check_signature",
    "footprint_of",
    "graph_bytes",
    "load_model",
    "open_verified_session",
    "report_model_load",
    "select_providers",
    "session_config",
    "session_memory_bytes",
    "settle_footprint",
    "signature_of",
    "token_rows_per_run",
    "usable_cpus",
    "write_model_files",
]
