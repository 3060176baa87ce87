"""The S3 model registry: layout, manifests, references, versions, aliases and integrity.

The write side beyond publishing (aliases, promotion, tags, archive, gc) is `maas.registry.admin`, which
serving code never imports.
"""

from __future__ import annotations

from maas.registry.documents import AliasDocument, AliasMove, CanarySplit, VersionMeta
from maas.registry.manifest import Artifact, Lineage, Manifest, ManifestDraft, Parity
from maas.registry.references import LATEST, ModelRef, parse_ref, parse_version_selector, validate_name
from maas.registry.store import ModelRegistry, ResolvedTarget, Stored, VersionConflict
from maas.signature import Signature, TensorSpec

__all__ = [
    "LATEST",
    "AliasDocument",
    "AliasMove",
    "Artifact",
    "CanarySplit",
    "Lineage",
    "Manifest",
    "ManifestDraft",
    "ModelRef",
    "ModelRegistry",
    "Parity",
    "ResolvedTarget",
    "Signature",
    "Stored",
    "TensorSpec",
    "VersionConflict",
    "VersionMeta",
    "parse_ref",
    "parse_version_selector",
    "validate_name",
]
