"""onnxruntime sessions, execution providers, the model cache and signature checks. No HTTP here."""

from __future__ import annotations

from maas.runtime.cache import CachedModel, ModelCache, VersionResolver
from maas.runtime.loaded_model import (
    PLATFORM,
    Deadline,
    LoadedModel,
    SessionConfig,
    check_signature,
    disk_bytes_needed,
    load_model,
    open_verified_session,
    signature_of,
    token_rows_per_run,
    usable_cpus,
    write_model_files,
)
from maas.runtime.loading import check_scratch_space, report_model_load, session_config
from maas.runtime.providers import CUDA, select_providers
from maas.runtime.text import TextTokenizer
from maas.runtime.validation import check_inputs, check_requested_outputs

__all__ = [
    "CUDA",
    "PLATFORM",
    "CachedModel",
    "Deadline",
    "LoadedModel",
    "ModelCache",
    "SessionConfig",
    "TextTokenizer",
    "VersionResolver",
    "check_inputs",
    "check_requested_outputs",
    "check_scratch_space",
    "check_signature",
    "disk_bytes_needed",
    "load_model",
    "open_verified_session",
    "report_model_load",
    "select_providers",
    "session_config",
    "signature_of",
    "token_rows_per_run",
    "usable_cpus",
    "write_model_files",
]
