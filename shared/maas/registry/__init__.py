"""The S3 model registry: layout, manifests, references, versions, aliases, integrity and signing.

The write side beyond publishing (aliases, promotion, tags, archive, gc) is `maas.registry.admin`, which
serving code never imports.
"""

from __future__ import annotations

from maas.registry.documents import AliasDocument, AliasMove, CanarySplit, VersionMeta
from maas.registry.manifest import (
    Artifact,
    FeatureImportance,
    Generation,
    GenerationDefaults,
    GlobalImportance,
    Lineage,
    Manifest,
    ManifestDraft,
    Normalization,
    Parity,
    Preprocessing,
    Quantization,
    TokenizerPreprocessing,
)
from maas.registry.references import LATEST, ModelRef, parse_ref, parse_version_selector, validate_name
from maas.registry.signing import ManifestSigner, signer_from_settings
from maas.registry.store import ModelRegistry, ResolvedTarget, Stored, VersionConflict
from maas.signature import Signature, TensorSpec

__all__ = [
    "LATEST",
    "AliasDocument",
    "AliasMove",
    "Artifact",
    "CanarySplit",
    "FeatureImportance",
    "Generation",
    "GenerationDefaults",
    "GlobalImportance",
    "Lineage",
    "Manifest",
    "ManifestDraft",
    "ManifestSigner",
    "ModelRef",
    "ModelRegistry",
    "Normalization",
    "Parity",
    "Preprocessing",
    "Quantization",
    "ResolvedTarget",
    "Signature",
    "Stored",
    "TensorSpec",
    "TokenizerPreprocessing",
    "VersionConflict",
    "VersionMeta",
    "parse_ref",
    "parse_version_selector",
    "signer_from_settings",
    "validate_name",
]
