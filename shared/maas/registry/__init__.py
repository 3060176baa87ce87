"""The S3 model registry: layout, manifests, references, versions, aliases and integrity."""

from __future__ import annotations

from maas.registry.manifest import Artifact, Lineage, Manifest, ManifestDraft, Parity
from maas.registry.references import LATEST, ModelRef, parse_ref, parse_version_selector, validate_name
from maas.registry.store import AliasTarget, ModelRegistry, VersionConflict
from maas.signature import Signature, TensorSpec

__all__ = [
    "LATEST",
    "AliasTarget",
    "Artifact",
    "Lineage",
    "Manifest",
    "ManifestDraft",
    "ModelRef",
    "ModelRegistry",
    "Parity",
    "Signature",
    "TensorSpec",
    "VersionConflict",
    "parse_ref",
    "parse_version_selector",
    "validate_name",
]
