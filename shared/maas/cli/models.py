"""`maas models ...` and `maas registry ...`: inspect and manage the registry. Never imports torch."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from maas.cli import common
from maas.config import Settings

if TYPE_CHECKING:
    from maas.registry import AliasDocument, ModelRegistry, VersionMeta


def add_models_commands(
    commands: common.Commands,
    output: argparse.ArgumentParser,
    author: argparse.ArgumentParser,
) -> None:
    models_commands = common.add_command_group(
        commands, "models", help="inspect and manage the model registry"
    )
    list_parser = models_commands.add_parser(
        "ls", aliases=["list"], parents=[output], help="list published models"
    )
    list_parser.set_defaults(command=models_list_command)
    show = models_commands.add_parser(
        "show", parents=[output], help="print a version's manifest, its metadata and its aliases"
    )
    common.add_model_reference(show, "ref")
    show.set_defaults(command=models_show_command)

    versions = models_commands.add_parser(
        "versions", parents=[output], help="list a model's versions with status, tags, metric and aliases"
    )
    versions.add_argument("name", metavar="NAME")
    versions.set_defaults(command=models_versions_command)

    promote = models_commands.add_parser(
        "promote", parents=[output, author], help="move an alias to a version unless it regresses"
    )
    _add_version_argument(promote)
    promote.add_argument("--to", dest="alias", default="production", metavar="ALIAS")
    promote.add_argument("--force", action="store_true", help="override the metric gate (needs --reason)")
    promote.add_argument("--reason", metavar="TEXT")
    promote.set_defaults(command=models_promote_command)

    rollback = models_commands.add_parser(
        "rollback", parents=[output, author], help="point an alias back at its previous version"
    )
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--alias", default="production", metavar="ALIAS")
    rollback.add_argument("--reason", metavar="TEXT")
    rollback.set_defaults(command=models_rollback_command)

    alias = models_commands.add_parser(
        "alias", parents=[output, author], help="point an alias at a version, optionally with a canary"
    )
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("version", metavar="VERSION", type=common.version)
    alias.add_argument(
        "--expected-version",
        type=int,
        metavar="N",
        help="move only if the alias points at N now (0: only create it)",
    )
    alias.add_argument(
        "--canary", type=common.version, metavar="VERSION", help="send --weight of traffic here"
    )
    alias.add_argument("--weight", type=float, metavar="W", help="canary share of traffic, 0 < W < 1")
    alias.add_argument("--reason", metavar="TEXT")
    alias.set_defaults(command=models_alias_command)

    tag = models_commands.add_parser("tag", parents=[output, author], help="add or remove a version's tags")
    _add_version_argument(tag)
    tag.add_argument("tags", metavar="KEY=VALUE", nargs="*")
    tag.add_argument("--remove", metavar="KEY", nargs="+", default=[])
    tag.set_defaults(command=models_tag_command)

    archive = models_commands.add_parser(
        "archive",
        parents=[output, author],
        help="mark a version archived: no alias may point at it, 'latest' skips it, and it is served "
        "only when pinned by number",
    )
    _add_version_argument(archive)
    archive.set_defaults(command=models_archive_command)

    delete = models_commands.add_parser(
        "delete",
        parents=[output],
        help="delete a version (no alias may point at it); its number is never given again",
    )
    _add_version_argument(delete)
    delete.set_defaults(command=models_delete_command)

    diff = models_commands.add_parser(
        "diff", parents=[output], help="compare two versions' params, metrics, signature and lineage"
    )
    diff.add_argument("name", metavar="NAME")
    diff.add_argument("a", metavar="A", type=common.version)
    diff.add_argument("b", metavar="B", type=common.version)
    diff.set_defaults(command=models_diff_command)


def add_registry_commands(commands: common.Commands, output: argparse.ArgumentParser) -> None:
    registry_commands = common.add_command_group(commands, "registry", help="maintain the registry bucket")
    gc = registry_commands.add_parser(
        "gc",
        parents=[output],
        help="find (and with --apply delete the files of) version folders without a manifest; each keeps its "
        "claim, so its number is never given again",
    )
    gc.add_argument("names", metavar="NAME", nargs="*", help="models to collect (default: all)")
    gc.add_argument(
        "--older-than",
        type=common.hours,
        default=24.0,
        metavar="HOURS",
        help="only folders last written more than HOURS ago (default: 24)",
    )
    gc.add_argument("--apply", action="store_true", help="delete them (default: list only)")
    gc.set_defaults(command=registry_gc_command)
    repair = registry_commands.add_parser(
        "repair-latest",
        parents=[output],
        help="write each model's latest pointer from its versions: for a registry published before the "
        "pointer existed, copied without it, or left behind by a publisher or deleter that died mid-change",
    )
    repair.add_argument("names", metavar="NAME", nargs="*", help="models to repair (default: all)")
    repair.set_defaults(command=registry_repair_latest_command)


def _add_version_argument(parser: argparse.ArgumentParser) -> None:
    """NAME VERSION: the positional pair that names one version by number."""
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("version", metavar="VERSION", type=common.version)


def models_list_command(args: argparse.Namespace) -> int:
    registry = common.registry()
    index = registry.model_index()
    if args.json:
        models = [{"name": name, "latest": v[-1], "versions": v} for name, v in index.items()]
        return common.print_json({"bucket": registry.bucket, "prefix": registry.prefix, "models": models})
    if not index:
        print(f"no models in s3://{registry.bucket}/{registry.prefix}")
        return 0
    rows = [("NAME", "LATEST", "VERSIONS")]
    rows += [(name, str(versions[-1]), str(len(versions))) for name, versions in index.items()]
    print(common.table(rows))
    return 0


def models_show_command(args: argparse.Namespace) -> int:
    from maas.registry import parse_ref

    ref = parse_ref(args.ref)
    registry = common.registry()
    version = registry.resolve(ref)
    manifest = registry.manifest(ref.name, version)
    meta = _meta(registry, ref.name, version)
    holders = _holders(registry.aliases(ref.name), version)
    folder = f"s3://{registry.bucket}/{registry.version_prefix(ref.name, version)}"
    report = [folder + path for path in manifest.report_files]
    if args.json:
        return common.print_json(
            {
                "ref": str(ref),
                "manifest": manifest.model_dump(mode="json"),
                "meta": meta.model_dump(mode="json"),
                "aliases": holders,
                "report": report,
            }
        )
    # stdout stays the bare manifest, so `maas models show REF | jq` keeps working; the rest is a note.
    print(manifest.model_dump_json(indent=2))
    tags = ", ".join(f"{k}={v}" for k, v in sorted(meta.tags.items())) or "-"
    print(
        f"# {ref.name} v{version}: status {meta.status}; tags {tags}; aliases {_describe_holders(holders)}",
        file=sys.stderr,
    )
    if report:
        print(f"# model card and plots: {', '.join(report)}", file=sys.stderr)
    return 0


def models_versions_command(args: argparse.Namespace) -> int:
    from maas.registry import validate_name

    name = validate_name(args.name)
    registry = common.registry()
    numbers = registry.versions(name)
    if not numbers:
        from maas.errors import NotFound

        raise NotFound(f"model '{name}': not found (no published version)")
    aliases = registry.aliases(name)
    entries: list[dict[str, Any]] = []
    for version in numbers:
        manifest = registry.manifest(name, version)
        meta = _meta(registry, name, version)
        metric = manifest.primary_metric
        entries.append(
            {
                "version": version,
                "created_at": manifest.created_at,
                "status": meta.status,
                "tags": meta.tags,
                "primary_metric": metric,
                "primary_metric_goal": manifest.primary_metric_goal if metric else None,
                "metric_value": manifest.metrics.get(metric) if metric else None,
                "aliases": _holders(aliases, version),
            }
        )
    if args.json:
        return common.print_json({"name": name, "versions": entries})
    rows = [("VERSION", "CREATED", "STATUS", "METRIC", "TAGS", "ALIASES")]
    for entry in entries:
        value = entry["metric_value"]
        metric_cell = f"{entry['primary_metric']}={value:.6g}" if value is not None else "-"
        tags = ",".join(f"{k}={v}" for k, v in sorted(entry["tags"].items())) or "-"
        rows.append(
            (
                str(entry["version"]),
                entry["created_at"],
                entry["status"],
                metric_cell,
                tags,
                _describe_holders(entry["aliases"]),
            )
        )
    print(common.table(rows))
    return 0


def models_promote_command(args: argparse.Namespace) -> int:
    from maas.errors import InvalidInput

    if args.force and not args.reason:
        raise InvalidInput("promote --force: expected a reason for overriding the gate (--reason), got none")
    document = common.admin().promote(
        args.name, args.version, alias=args.alias, force=args.force, reason=args.reason, by=args.by
    )
    return _print_alias(args, args.name, args.alias, document)


def models_rollback_command(args: argparse.Namespace) -> int:
    document = common.admin().rollback(args.name, args.alias, reason=args.reason, by=args.by)
    return _print_alias(args, args.name, args.alias, document)


def models_alias_command(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from maas.errors import InvalidInput
    from maas.registry import CanarySplit

    canary = None
    if (args.canary is None) != (args.weight is None):
        raise InvalidInput("alias: expected --canary VERSION and --weight W together, got only one")
    if args.canary is not None:
        try:
            canary = CanarySplit(version=args.canary, weight=args.weight)
        except ValidationError:
            raise InvalidInput(f"alias --weight: expected 0 < W < 1, got {args.weight}") from None
    if args.expected_version is not None and args.expected_version < 0:
        raise InvalidInput(f"alias --expected-version: expected 0 or a version, got {args.expected_version}")
    document = common.admin().set_alias(
        args.name,
        args.alias,
        args.version,
        expected_version=args.expected_version,
        canary=canary,
        reason=args.reason,
        by=args.by,
    )
    return _print_alias(args, args.name, args.alias, document)


def models_tag_command(args: argparse.Namespace) -> int:
    from maas.errors import InvalidInput

    tags: dict[str, str] = {}
    for pair in args.tags:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"tag: expected KEY=VALUE, got {pair[:64]!r}")
        tags[key] = value
    if not tags and not args.remove:
        raise InvalidInput("tag: expected KEY=VALUE pairs or --remove KEY, got neither")
    meta = common.admin().set_tags(args.name, args.version, tags, remove=args.remove, by=args.by)
    return _print_meta(args, args.name, args.version, meta)


def models_archive_command(args: argparse.Namespace) -> int:
    meta = common.admin().archive(args.name, args.version, by=args.by)
    return _print_meta(args, args.name, args.version, meta)


def models_delete_command(args: argparse.Namespace) -> int:
    common.admin().delete_version(args.name, args.version)
    if args.json:
        return common.print_json({"name": args.name, "version": args.version, "deleted": True})
    print(f"deleted {args.name} v{args.version}")
    return 0


def models_diff_command(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    differences = common.admin().diff(args.name, args.a, args.b)
    if args.json:
        return common.print_json(
            {"name": args.name, "a": args.a, "b": args.b, "differences": [asdict(d) for d in differences]}
        )
    if not differences:
        print(f"{args.name} v{args.a} and v{args.b}: no differences")
        return 0
    rows = [("SECTION", "KEY", f"v{args.a}", f"v{args.b}")]
    rows += [(d.section, d.key, common.cell(d.a), common.cell(d.b)) for d in differences]
    print(common.table(rows))
    return 0


def registry_gc_command(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from maas.registry import validate_name
    from maas.registry.admin import RegistryAdmin
    from maas.registry.store import CLAIM_FILE

    registry = common.registry()
    admin = RegistryAdmin(registry)
    names = [validate_name(name) for name in args.names] or _model_folders(registry)
    older_than = timedelta(hours=args.older_than)
    abandoned = {name: admin.collect_garbage(name, older_than=older_than, apply=args.apply) for name in names}
    abandoned = {name: versions for name, versions in abandoned.items() if versions}
    if args.json:
        return common.print_json(
            {"older_than_hours": args.older_than, "applied": args.apply, "abandoned": abandoned}
        )
    if not abandoned:
        print(f"no abandoned version folders older than {args.older_than:g}h")
        return 0
    verb = "deleted" if args.apply else "would delete"
    for name, versions in abandoned.items():
        for version in versions:
            print(f"{verb} {registry.version_prefix(name, version)} (all but {CLAIM_FILE})")
    if not args.apply:
        print("dry run: pass --apply to delete them")
    return 0


def registry_repair_latest_command(args: argparse.Namespace) -> int:
    from maas.registry import validate_name
    from maas.registry.admin import RegistryAdmin

    registry = common.registry()
    admin = RegistryAdmin(registry)
    names = [validate_name(name) for name in args.names] or _model_folders(registry)
    latest = {name: admin.repair_latest(name) for name in names}
    if args.json:
        return common.print_json({"latest": latest})
    for name, version in latest.items():
        print(
            f"{name}: latest is v{version}"
            if version is not None
            else f"{name}: no ready version, no pointer"
        )
    return 0


def _meta(registry: ModelRegistry, name: str, version: int) -> VersionMeta:
    from maas.registry import VersionMeta

    stored = registry.version_meta(name, version)
    return stored.document if stored else VersionMeta()


def _holders(aliases: dict[str, AliasDocument], version: int) -> list[dict[str, Any]]:
    """The aliases serving `version`: as their main version, or as their canary (with its weight)."""
    holders: list[dict[str, Any]] = []
    for alias, document in sorted(aliases.items()):
        if document.version == version:
            holders.append({"alias": alias, "role": "main", "weight": None})
        if document.canary is not None and document.canary.version == version:
            holders.append({"alias": alias, "role": "canary", "weight": document.canary.weight})
    return holders


def _describe_holders(holders: list[dict[str, Any]]) -> str:
    parts = [
        h["alias"] if h["role"] == "main" else f"{h['alias']} (canary {h['weight']:.0%})" for h in holders
    ]
    return ", ".join(parts) or "-"


def _print_alias(args: argparse.Namespace, name: str, alias: str, document: AliasDocument) -> int:
    if args.json:
        return common.print_json({"name": name, "alias": alias, **document.model_dump(mode="json")})
    last = document.history[-1] if document.history else None
    moved = f"v{last.from_version} -> " if last is not None and last.from_version is not None else ""
    line = f"{name}@{alias}: {moved}v{document.version}"
    if document.canary is not None:
        line += f" (canary v{document.canary.version} at {document.canary.weight:.0%})"
    if document.updated_by:
        line += f" by {document.updated_by}"
    if document.reason:
        line += f": {document.reason}"
    print(line)
    return 0


def _print_meta(args: argparse.Namespace, name: str, version: int, meta: VersionMeta) -> int:
    if args.json:
        return common.print_json({"name": name, "version": version, **meta.model_dump(mode="json")})
    tags = ", ".join(f"{k}={v}" for k, v in sorted(meta.tags.items())) or "-"
    print(f"{name} v{version}: status {meta.status}; tags {tags}")
    return 0


def _model_folders(registry: ModelRegistry) -> list[str]:
    """Every model folder, including one that holds only abandoned uploads (model_index skips those)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from maas import aws_clients
    from maas.errors import Unavailable
    from maas.registry.references import NAME_PATTERN

    prefix = f"{registry.prefix}models/"
    s3 = aws_clients.s3_client(Settings.from_env().endpoint_url)
    names: set[str] = set(registry.model_index())
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=registry.bucket, Prefix=prefix, Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if NAME_PATTERN.fullmatch(name):
                    names.add(name)
    except (BotoCoreError, ClientError) as exc:
        raise Unavailable(f"listing model folders in s3://{registry.bucket}/{prefix}: {exc}") from None
    return sorted(names)
