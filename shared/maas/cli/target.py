"""Where the CLI's storage is, decided once per command before any client exists.

In order: the environment (`MAAS_BUCKET` or `AWS_ENDPOINT_URL`, as a user's shell or CI sets them); the
deployed stack `maas use-stack NAME` remembered; the local stack `make serve` runs, found by the descriptor
it leaves in its data folder. With none of them a storage command stops at once, before any long work (a
training run), instead of quietly trying AWS's default bucket.

Light on purpose: `maas --help` imports this module; the local stack's modules load only when a command
that touches storage looks for a running stack.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from maas.config import DEFAULT_BUCKET, ENV_BUCKET, ENV_ENDPOINT_URL
from maas.errors import ConfigurationError

if TYPE_CHECKING:
    from maas.local.data_folder import StackDescriptor

ENV_CONFIG_HOME = "XDG_CONFIG_HOME"
ENV_REGION = "AWS_REGION"
ENV_DEFAULT_REGION = "AWS_DEFAULT_REGION"
ENV_PROFILE = "AWS_PROFILE"
SAVED_STACK_FILE = "stack.json"
SAVED_STACK_FORMAT = 1

Source = Literal["environment", "deployed stack", "local stack"]
# What `maas config --get` can print, in the order `maas config` shows them.
FIELDS = ("source", "endpoint", "bucket", "region", "api_url")

NO_TARGET_MESSAGE = (
    "no storage to use: start the local stack with `make serve`, or point at a deployed one with "
    f"`maas use-stack NAME` (or set {ENV_BUCKET})"
)


class NoStorageTarget(ConfigurationError):
    """Neither the environment, a remembered deployed stack nor a running local stack says where storage is:
    the CLI exits 2 (a usage error), as for a missing argument."""


@dataclass(frozen=True, slots=True)
class SavedStack:
    """A deployed stack's outputs, read from CloudFormation once by `maas use-stack` and kept in the user's
    config folder, so every later command reaches its bucket and API without exports."""

    stack: str
    region: str
    bucket: str
    api_url: str | None
    saved_at: str = ""
    format: int = SAVED_STACK_FORMAT

    def to_json(self) -> str:
        from maas.local.data_folder import record_json  # maas.local's package imports the whole emulator

        return record_json(self)

    @classmethod
    def from_json(cls, text: str) -> SavedStack:
        from maas.local.data_folder import record_fields

        return cls(**record_fields(text, SAVED_STACK_FORMAT, "a saved stack"))


@dataclass(frozen=True, slots=True)
class StorageTarget:
    """Where storage commands go, why there, and the variables that point this process's clients at it."""

    source: Source
    bucket: str
    endpoint_url: str | None
    region: str | None
    api_url: str | None
    # Which stack or folder the source is, in words (`maas config`, the --verbose line).
    origin: str
    environment: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, str | None]:
        return {
            "source": f"{self.source} ({self.origin})",
            "endpoint": self.endpoint_url or (f"AWS S3 in {self.region}" if self.region else "AWS S3"),
            "bucket": self.bucket,
            "region": self.region,
            "api_url": self.api_url,
        }

    def summary(self) -> str:
        """One line: the bucket, where it is, the API, and why this target was chosen."""
        region = self.region or "the default region"
        where = f"at {self.endpoint_url}" if self.endpoint_url else f"in AWS S3 ({region})"
        api = f"; API {self.api_url}" if self.api_url else ""
        return f"maas: storage s3://{self.bucket} {where}{api} [{self.source}: {self.origin}]"

    def apply(self, environ: MutableMapping[str, str]) -> None:
        """Point this process's AWS clients here: before any Settings or boto3 client is made."""
        for name, value in self.environment.items():
            environ[name] = value
        if self.source == "local stack":
            # A profile would be looked up (and may not exist) though the stack's keys are in the environment.
            environ.pop(ENV_PROFILE, None)


def storage_failure_message(exc: Exception, action: str) -> str | None:
    """One line for a boto error a command let through (a transfer, a call outside the registry), naming
    the bucket and endpoint as the registry's own errors do; None for any other exception."""
    botocore_errors = sys.modules.get("botocore.exceptions")
    boto3_errors = sys.modules.get("boto3.exceptions")
    from_botocore = botocore_errors is not None and isinstance(
        exc, botocore_errors.BotoCoreError | botocore_errors.ClientError
    )
    if not from_botocore and (boto3_errors is None or not isinstance(exc, boto3_errors.Boto3Error)):
        return None
    from maas.errors import Unavailable
    from maas.objects import storage_errors, storage_location

    if from_botocore:
        try:
            with storage_errors(action):
                raise exc
        except Unavailable as translated:
            return translated.message
        except Exception:  # a missing key or a lost condition: boto's own words say more than "not found"
            pass
    return f"{action}: {exc} ({storage_location(action)})"


def resolve_target(environ: Mapping[str, str], *, project_root: Path | None = None) -> StorageTarget:
    """The storage target by precedence (environment, remembered deployed stack, running local stack);
    NoStorageTarget when there is none. `project_root`: where to look for `.maas/` (default: found from the
    working directory)."""
    bucket = environ.get(ENV_BUCKET, "").strip()
    endpoint = environ.get(ENV_ENDPOINT_URL, "").strip()
    if bucket or endpoint:
        return _environment_target(environ, bucket, endpoint, project_root)
    saved = read_saved_stack(environ)
    if saved is not None:
        return StorageTarget(
            source="deployed stack",
            bucket=saved.bucket,
            endpoint_url=None,
            region=saved.region,
            api_url=saved.api_url,
            origin=f"{saved.stack} in {saved.region}, saved in {saved_stack_path(environ)}",
            environment={
                ENV_BUCKET: saved.bucket,
                ENV_REGION: saved.region,
                ENV_DEFAULT_REGION: saved.region,
            },
        )
    local = _running_local_stack(environ, project_root)
    if local is not None:
        return StorageTarget(
            source="local stack",
            bucket=local.bucket,
            endpoint_url=local.endpoint_url,
            region=local.region,
            api_url=local.url,
            origin=f"{local.data_dir}, pid {local.pid}",
            environment={
                **local.credentials,
                ENV_ENDPOINT_URL: local.endpoint_url,
                ENV_BUCKET: local.bucket,
                ENV_REGION: local.region,
                ENV_DEFAULT_REGION: local.region,
            },
        )
    raise NoStorageTarget(NO_TARGET_MESSAGE)


def _environment_target(
    environ: Mapping[str, str], bucket: str, endpoint: str, project_root: Path | None
) -> StorageTarget:
    """The environment's target; the API URL (and a bucket the shell left out) come from the local stack
    or the saved stack when the environment points at the same store."""
    region = environ.get(ENV_REGION) or environ.get(ENV_DEFAULT_REGION) or None
    api_url = None
    named = ((ENV_BUCKET, bucket), (ENV_ENDPOINT_URL, endpoint))
    origin = ", ".join(f"{name} set" for name, value in named if value)
    environment: dict[str, str] = {}
    local = _running_local_stack(environ, project_root) if endpoint else None
    saved = _readable_saved_stack(environ) if bucket and not endpoint else None
    if local is not None and endpoint.rstrip("/") == local.endpoint_url.rstrip("/"):
        # The banner's exports: the stack's own bucket and API, even where the shell left MAAS_BUCKET out.
        api_url = local.url
        if not bucket:
            bucket = local.bucket
            environment[ENV_BUCKET] = bucket
            origin += f"; bucket of the local stack in {local.data_dir}"
    elif saved is not None and bucket == saved.bucket:
        api_url = saved.api_url
        region = region or saved.region
    if not bucket:
        bucket = DEFAULT_BUCKET
        origin += f"; {ENV_BUCKET} unset, so the default bucket"
    return StorageTarget("environment", bucket, endpoint or None, region, api_url, origin, environment)


def _readable_saved_stack(environ: Mapping[str, str]) -> SavedStack | None:
    # Only to name the API of the bucket the environment chose: a damaged file must not stop the command.
    try:
        return read_saved_stack(environ)
    except ConfigurationError:
        return None


def _running_local_stack(environ: Mapping[str, str], project_root: Path | None) -> StackDescriptor | None:
    from maas.local.data_folder import data_folder, running_stack
    from maas.local.stack import find_project_root

    if project_root is None:
        try:
            project_root = find_project_root()
        except ConfigurationError:  # outside a checkout: only MAAS_DATA_DIR can name the folder
            project_root = Path.cwd()
    return running_stack(data_folder(environ, project_root))


def saved_stack_path(environ: Mapping[str, str]) -> Path:
    """`${XDG_CONFIG_HOME:-~/.config}/maas/stack.json`."""
    home = environ.get(ENV_CONFIG_HOME, "").strip()
    base = Path(home).expanduser() if home else Path.home() / ".config"
    return base / "maas" / SAVED_STACK_FILE


def read_saved_stack(environ: Mapping[str, str]) -> SavedStack | None:
    path = saved_stack_path(environ)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the saved stack ({exc.strerror})") from None
    try:
        return SavedStack.from_json(text)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{path}: expected a stack saved by `maas use-stack`, got something else; run "
            "`maas use-stack NAME` again, or `maas use-stack --local` to forget it"
        ) from None


def save_stack(environ: Mapping[str, str], stack: SavedStack) -> Path:
    """Write the saved stack whole or not at all; returns its path."""
    path = saved_stack_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = SavedStack(**{**asdict(stack), "saved_at": datetime.now(UTC).isoformat(timespec="seconds")})
    temporary = tempfile.NamedTemporaryFile
    with temporary("w", dir=path.parent, prefix=".stack-", suffix=".json", delete=False) as out:
        out.write(stamped.to_json())
    os.replace(out.name, path)
    return path


def forget_stack(environ: Mapping[str, str]) -> SavedStack | None:
    """Remove the saved stack; returns what it was (None when none was saved)."""
    try:
        saved = read_saved_stack(environ)
    except ConfigurationError:
        saved = None
    saved_stack_path(environ).unlink(missing_ok=True)
    return saved
