"""Registry routes: list and inspect models, diff versions, read their report files, judge and promote,
move aliases, roll back, tag and archive versions.

Routes only translate: path, body and caller identity in, a RegistryAdmin or ModelRegistry call, wire out.
The routes themselves are rows of route_table; errors are mapped in http_transport. Deleting a version is
deliberately not offered over HTTP (use the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ValidationError

from maas.api.http_body import read_body
from maas.api.route_table import (
    REGISTRY_ARCHIVE,
    REGISTRY_DELETE_ALIAS,
    REGISTRY_DIFF,
    REGISTRY_GATE,
    REGISTRY_LIST_MODELS,
    REGISTRY_MODEL,
    REGISTRY_PROMOTE,
    REGISTRY_ROLLBACK,
    REGISTRY_SET_ALIAS,
    REGISTRY_TAGS,
    REGISTRY_VERSION,
    REGISTRY_VERSION_FILE,
)
from maas.api.routing import ServedRoutes, json_response
from maas.errors import InvalidInput, NotFound
from maas.protocol.registry_types import (
    AliasDeleted,
    Difference,
    GateVerdict,
    Goal,
    LatestVersion,
    ModelDetail,
    ModelDiff,
    ModelSummary,
    PromoteRequest,
    RegistryModelList,
    RollbackRequest,
    SetAliasRequest,
    TagsRequest,
    VersionDetail,
    VersionSummary,
)
from maas.protocol.validation_messages import describe_validation_error
from maas.registry.admin import RegistryAdmin
from maas.registry.documents import VersionMeta
from maas.registry.manifest import Manifest
from maas.registry.references import ALIAS_PATTERN, LATEST, VERSION_PATTERN, describe_name, validate_name
from maas.registry.store import ModelRegistry

EXPECTED_VERSION_QUERY = "expected_version"
ALIAS_QUERY = "alias"
DEFAULT_PROMOTION_ALIAS = "production"
# Versions never change, so a report file may be cached for good; private: the route is IAM-only.
IMMUTABLE_CACHE_CONTROL = "private, max-age=31536000, immutable"
REPORT_CONTENT_TYPES = {".md": "text/markdown; charset=utf-8", ".png": "image/png"}
_QUERY_NUMBER = re.compile(r"[0-9]{1,18}")
Body = TypeVar("Body", bound=BaseModel)


def register_registry_routes(
    routes: ServedRoutes,
    admin: RegistryAdmin,
    *,
    max_request_bytes: int,
    compressed_bodies: bool = True,
    max_json_depth: int | None = None,
) -> None:
    router = routes.router

    def body(model: type[Body], *, optional: bool = False) -> Body:
        raw = read_body(router.current_event, max_request_bytes, compressed=compressed_bodies)
        if optional and not raw.strip():
            raw = "{}"
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            # Registry bodies hold no free-form JSON, so their schema bounds the depth; only the parser's own
            # recursion limit needs naming.
            raise InvalidInput(describe_validation_error(exc, max_json_depth=max_json_depth)) from None

    def caller() -> str | None:
        return caller_identity(router.current_event.raw_event)

    _register_reads(routes, admin)

    @routes.add(REGISTRY_SET_ALIAS)
    def set_alias(name: str, alias: str) -> Response[Any]:
        model, alias_name = _name(name), _alias(alias)
        request = body(SetAliasRequest)
        if request.canary is not None and request.canary.version == request.version:
            raise InvalidInput(
                f"canary.version: expected a version other than the alias's own ({request.version}), "
                "got the same"
            )
        document = admin.set_alias(
            model,
            alias_name,
            request.version,
            expected_version=request.expected_version,
            canary=request.canary.as_split() if request.canary else None,
            reason=request.reason,
            by=caller(),
        )
        return _ok(document)

    @routes.add(REGISTRY_DELETE_ALIAS)
    def delete_alias(name: str, alias: str) -> Response[Any]:
        model, alias_name = _name(name), _alias(alias)
        expected = _query_number(router.current_event.get_query_string_value(EXPECTED_VERSION_QUERY))
        admin.delete_alias(model, alias_name, expected_version=expected)
        return _ok(AliasDeleted(name=model, alias=alias_name))

    @routes.add(REGISTRY_ROLLBACK)
    def rollback(name: str, alias: str) -> Response[Any]:
        model, alias_name = _name(name), _alias(alias)
        request = body(RollbackRequest, optional=True)
        return _ok(admin.rollback(model, alias_name, reason=request.reason, by=caller()))

    @routes.add(REGISTRY_PROMOTE)
    def promote(name: str) -> Response[Any]:
        model = _name(name)
        request = body(PromoteRequest)
        alias_name = _alias(request.alias, field="alias")
        document = admin.promote(
            model,
            request.version,
            alias=alias_name,
            force=request.force,
            reason=request.reason,
            by=caller(),
            expected_version=request.expected_version,
        )
        return _ok(document)

    @routes.add(REGISTRY_TAGS)
    def set_tags(name: str, version: str) -> Response[Any]:
        model, number = _name(name), _version(version)
        request = body(TagsRequest)
        return _ok(admin.set_tags(model, number, request.tags, remove=request.remove, by=caller()))

    @routes.add(REGISTRY_ARCHIVE)
    def archive(name: str, version: str) -> Response[Any]:
        model, number = _name(name), _version(version)
        return _ok(admin.archive(model, number, by=caller()))


def _register_reads(routes: ServedRoutes, admin: RegistryAdmin) -> None:
    registry = admin.registry
    router = routes.router

    @routes.add(REGISTRY_LIST_MODELS)
    def list_models() -> Response[Any]:
        models = []
        for name, versions in registry.model_index().items():
            aliases = sorted(registry.aliases(name).items())
            models.append(
                ModelSummary(
                    name=name,
                    versions=versions,
                    aliases={alias: doc.version for alias, doc in aliases},
                    canaries={alias: doc.canary for alias, doc in aliases if doc.canary is not None},
                    latest=_latest(registry, name),
                )
            )
        return _ok(RegistryModelList(models=models))

    @routes.add(REGISTRY_MODEL)
    def describe_model(name: str) -> Response[Any]:
        model = _name(name)
        versions = registry.versions(model)
        if not versions:
            raise NotFound(f"model '{model}': not found (no published version)")
        return _ok(
            ModelDetail(
                name=model,
                versions=[_version_summary(registry, model, version) for version in versions],
                aliases=dict(sorted(registry.aliases(model).items())),
            )
        )

    @routes.add(REGISTRY_VERSION)
    def describe_version(name: str, version: str) -> Response[Any]:
        model, number = _name(name), _version(version)
        manifest = registry.manifest(model, number)
        stored = registry.version_meta(model, number)
        meta = stored.document if stored else VersionMeta(status=manifest.status)
        return _ok(VersionDetail(manifest=manifest, meta=meta))

    @routes.add(REGISTRY_VERSION_FILE)
    def version_file(name: str, version: str, file: str) -> Response[Any]:
        model, number, path = _name(name), _version(version), unquote(file)
        manifest = registry.manifest(model, number)
        reports = manifest.report_files
        # Only the report files: the graph, its weights and the tokenizer are not the console's to fetch.
        if path not in reports:
            raise NotFound(
                f"file: expected one of the report files of '{model}' v{number} "
                f"({', '.join(reports) if reports else 'it has none'}), got {describe_name(path)}"
            )
        data = registry.read_artifact(manifest, manifest.artifact(path))
        content_type = REPORT_CONTENT_TYPES[path[path.rindex(".") :]]
        return Response(
            status_code=200,
            content_type=content_type,
            # bytes: the resolver sends them base64-encoded, which API Gateway decodes for the client.
            body=data,
            headers={"Cache-Control": IMMUTABLE_CACHE_CONTROL},
        )

    @routes.add(REGISTRY_DIFF)
    def diff(name: str) -> Response[Any]:
        model = _name(name)
        a, b = _query_version(router, "a"), _query_version(router, "b")
        for number in (a, b):
            if not registry.manifest_exists(model, number):
                raise NotFound(f"model '{model}' version {number}: not found")
        differences = [Difference(**asdict(d)) for d in admin.diff(model, a, b)]
        return _ok(ModelDiff(name=model, a=a, b=b, differences=differences))

    @routes.add(REGISTRY_GATE)
    def gate(name: str) -> Response[Any]:
        model = _name(name)
        number = _query_version(router, "version")
        alias_query = router.current_event.get_query_string_value(ALIAS_QUERY)
        alias_name = DEFAULT_PROMOTION_ALIAS if alias_query is None else _alias(alias_query)
        verdict = admin.gate(model, number, alias=alias_name)
        return _ok(GateVerdict(**asdict(verdict)))


def caller_identity(event: Mapping[str, Any]) -> str | None:
    """Who is calling, as API Gateway authenticated them: the IAM principal, else the JWT subject.

    Never taken from the body, so the alias history records who really moved an alias."""
    context = _mapping(event.get("requestContext"))
    authorizer = _mapping(context.get("authorizer"))
    candidates = (
        _mapping(authorizer.get("iam")).get("userArn"),
        _mapping(_mapping(authorizer.get("jwt")).get("claims")).get("sub"),
        # REST API (v1) events carry the IAM caller here instead.
        _mapping(context.get("identity")).get("userArn"),
    )
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def _version_summary(registry: ModelRegistry, name: str, version: int) -> VersionSummary:
    manifest = registry.manifest(name, version)
    stored = registry.version_meta(name, version)
    return VersionSummary(
        version=version,
        created_at=manifest.created_at,
        status=stored.document.status if stored else manifest.status,
        tags=stored.document.tags if stored else {},
        metrics=manifest.metrics,
        task=manifest.task,
        primary_metric=manifest.primary_metric,
        primary_metric_goal=_goal(manifest),
    )


def _latest(registry: ModelRegistry, name: str) -> LatestVersion | None:
    """The version the latest pointer names, its manifest the one the pointer's GET brought."""
    try:
        version = registry.latest_version(name)
    except NotFound:
        # Every version archived (or gone since the listing): no latest.
        return None
    manifest = registry.manifest(name, version)
    metric = manifest.primary_metric
    return LatestVersion(
        version=version,
        created_at=manifest.created_at,
        status=registry.version_status(name, version),
        task=manifest.task,
        primary_metric=metric,
        primary_metric_goal=_goal(manifest),
        primary_value=manifest.metrics.get(metric) if metric is not None else None,
    )


def _goal(manifest: Manifest) -> Goal | None:
    # The goal means nothing without a metric to apply it to.
    return manifest.primary_metric_goal if manifest.primary_metric is not None else None


def _name(text: str) -> str:
    # API Gateway hands path parameters over still percent-encoded.
    return validate_name(unquote(text))


def _version(text: str) -> int:
    value = unquote(text)
    if not VERSION_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"model version: expected an integer from 1 (at most 18 digits), got {describe_name(value)}"
        )
    return int(value)


def _alias(text: str, *, field: str = "alias") -> str:
    value = unquote(text)
    if not ALIAS_PATTERN.fullmatch(value) or value[:1].isdigit():
        raise InvalidInput(
            f"{field}: expected 1-64 characters of [a-z0-9._-] starting with a letter, "
            f"got {describe_name(value)}"
        )
    if value == LATEST:
        raise InvalidInput(
            f"{field}: expected a settable alias, got 'latest' (reserved for the newest version)"
        )
    return value


def _query_version(router: Router, parameter: str) -> int:
    value = router.current_event.get_query_string_value(parameter)
    if value is None or not VERSION_PATTERN.fullmatch(value):
        got = "none" if value is None else describe_name(value)
        raise InvalidInput(
            f"{parameter}: expected a version number (an integer from 1, at most 18 digits), got {got}"
        )
    return int(value)


def _query_number(value: str | None) -> int | None:
    if value is None:
        return None
    if not _QUERY_NUMBER.fullmatch(value):
        raise InvalidInput(
            f"{EXPECTED_VERSION_QUERY}: expected a non-negative integer of at most 18 digits, "
            f"got {describe_name(value)}"
        )
    return int(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ok(document: BaseModel) -> Response[Any]:
    return json_response(document.model_dump_json())
