"""Optional manifest signing: an HMAC over each committed manifest, checked on every read.

A manifest records the sha256 of every artifact, so a manifest that verifies pins the whole version:
someone who can write to the bucket but cannot use the key cannot swap a model, its weights or its
tokenizer. With MAAS_MANIFEST_SIGNING set, publishing writes `manifest.sig` (create-only) before
`manifest.json`, and every manifest read refuses one whose signature is missing or does not match.

    MAAS_MANIFEST_SIGNING=""                       off
    MAAS_MANIFEST_SIGNING="kms:<key id or ARN>"    a KMS HMAC_256 key (GenerateMac/VerifyMac); the key
                                                   never leaves KMS
    MAAS_MANIFEST_SIGNING="secret:<name or ARN>"   a Secrets Manager secret whose value is the HMAC key,
                                                   read once per process

`manifest.sig` is {"algorithm": "HMAC_SHA_256", "key": "<the setting>", "mac": "<base64>"}. The MAC covers
the SHA-256 digest of the exact manifest bytes rather than the bytes themselves, since KMS takes at most
4096 bytes of message and a manifest with an evaluation section can be larger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from maas.aws_clients import KmsMacClient, SecretsClient, kms_client, secrets_client
from maas.config import ENV_MANIFEST_SIGNING, Settings
from maas.errors import ConfigurationError, IntegrityError, Unavailable

SIGNATURE_FILE = "manifest.sig"
ALGORITHM: Literal["HMAC_SHA_256"] = "HMAC_SHA_256"
KMS_PREFIX = "kms:"
SECRET_PREFIX = "secret:"
# Codes that mean the deployment is wrong (IAM, key state, a missing secret) rather than AWS being busy.
CONFIGURATION_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "NotFoundException",
        "ResourceNotFoundException",
        "InvalidKeyUsageException",
        "DisabledException",
        "KMSInvalidStateException",
        "DecryptionFailure",
        "InvalidRequestException",
        "ValidationException",
    }
)
# The key names in the signature file come from storage; cap what a message repeats of them.
_SHOWN_CHARS = 200


class SignatureDocument(BaseModel):
    """`manifest.sig`: which key signed the manifest, and the MAC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["HMAC_SHA_256"] = ALGORITHM
    key: str
    mac: str


class ManifestSigner(Protocol):
    """Signs exact manifest bytes, and verifies them against a stored signature."""

    @property
    def key(self) -> str:
        """The MAAS_MANIFEST_SIGNING value naming the key (never the key material)."""
        ...

    def sign(self, manifest: bytes) -> str:
        """The `manifest.sig` document for these bytes."""
        ...

    def verify(self, manifest: bytes, signature: str) -> None:
        """Raise IntegrityError unless `signature` (a `manifest.sig` document) matches these bytes."""
        ...


class _HmacSigner:
    """HMAC-SHA256 over the manifest's SHA-256; subclasses say where the key lives."""

    def __init__(self, key: str) -> None:
        self._key = key

    @property
    def key(self) -> str:
        return self._key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._key!r})"

    def sign(self, manifest: bytes) -> str:
        mac = self._mac(hashlib.sha256(manifest).digest())
        document = SignatureDocument(key=self._key, mac=base64.b64encode(mac).decode("ascii"))
        return document.model_dump_json(indent=2)

    def verify(self, manifest: bytes, signature: str) -> None:
        # The messages name the file and what is wrong with it; the key names (the setting's and the one the
        # stored file claims) go in `detail`, for the logs: callers may be anonymous.
        try:
            document = SignatureDocument.model_validate_json(signature)
            mac = base64.b64decode(document.mac, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise IntegrityError(
                f"{SIGNATURE_FILE}: expected JSON with algorithm {ALGORITHM}, key and a base64 mac, "
                "got something else",
                detail=f"{type(exc).__name__}: {exc}",
            ) from None
        if not self._matches(hashlib.sha256(manifest).digest(), mac):
            other = "" if document.key == self._key else f"; it names key {_shown(document.key)}"
            raise IntegrityError(
                f"{SIGNATURE_FILE}: signature does not match: the manifest was changed after signing, or "
                "signed with another key",
                detail=f"verified with {ENV_MANIFEST_SIGNING}={_shown(self._key)}{other}",
            )

    def _mac(self, digest: bytes) -> bytes:
        raise NotImplementedError

    def _matches(self, digest: bytes, mac: bytes) -> bool:
        raise NotImplementedError


class KmsManifestSigner(_HmacSigner):
    """MACs made and checked by KMS with an HMAC_256 key, which never leaves it."""

    def __init__(self, key_id: str, client: Callable[[], KmsMacClient]) -> None:
        super().__init__(KMS_PREFIX + key_id)
        self._key_id = key_id
        self._client = client

    def _mac(self, digest: bytes) -> bytes:
        with _aws_errors(f"KMS GenerateMac with key {_shown(self._key_id)}"):
            response = self._client().generate_mac(KeyId=self._key_id, Message=digest, MacAlgorithm=ALGORITHM)
        mac: bytes = response["Mac"]
        return mac

    def _matches(self, digest: bytes, mac: bytes) -> bool:
        try:
            with _aws_errors(f"KMS VerifyMac with key {_shown(self._key_id)}"):
                response = self._client().verify_mac(
                    KeyId=self._key_id, Message=digest, MacAlgorithm=ALGORITHM, Mac=mac
                )
        except _InvalidMac:
            return False
        return bool(response.get("MacValid"))


class SecretManifestSigner(_HmacSigner):
    """MACs made here with a key kept in Secrets Manager, read on first use and kept for the process."""

    def __init__(self, secret_id: str, client: Callable[[], SecretsClient]) -> None:
        super().__init__(SECRET_PREFIX + secret_id)
        self._secret_id = secret_id
        self._client = client
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def _mac(self, digest: bytes) -> bytes:
        return hmac.new(self._secret_key(), digest, hashlib.sha256).digest()

    def _matches(self, digest: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self._mac(digest), mac)

    def _secret_key(self) -> bytes:
        with self._lock:
            if self._secret is None:
                self._secret = self._fetch()
            return self._secret

    def _fetch(self) -> bytes:
        where = f"Secrets Manager secret {_shown(self._secret_id)}"
        with _aws_errors(f"reading {where}"):
            response = self._client().get_secret_value(SecretId=self._secret_id)
        text, binary = response.get("SecretString"), response.get("SecretBinary")
        secret = text.encode("utf-8") if isinstance(text, str) else binary
        if not isinstance(secret, bytes) or not secret:
            raise ConfigurationError(f"{ENV_MANIFEST_SIGNING}: {where}: expected a non-empty value, got none")
        return secret


def signer_from_settings(settings: Settings) -> ManifestSigner | None:
    """The signer MAAS_MANIFEST_SIGNING names, or None when signing is off. Nothing is fetched yet."""
    spec = settings.manifest_signing
    if not spec:
        return None
    endpoint = settings.endpoint_url
    kind, _, name = spec.partition(":")
    if name and f"{kind}:" == KMS_PREFIX:
        return KmsManifestSigner(name, lambda: kms_client(endpoint))
    if name and f"{kind}:" == SECRET_PREFIX:
        return SecretManifestSigner(name, lambda: secrets_client(endpoint))
    raise ConfigurationError(
        f"{ENV_MANIFEST_SIGNING}: expected '', '{KMS_PREFIX}<key id or ARN>' or "
        f"'{SECRET_PREFIX}<name or ARN>', got {_shown(spec)}"
    )


class _InvalidMac(Exception):
    """KMS answered that the MAC does not verify."""


@contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    """Only the error code travels: AWS messages can quote ARNs and account ids, never secret values, but
    the code is all a reader needs."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "KMSInvalidMacException":
            raise _InvalidMac from None
        if code in CONFIGURATION_CODES:
            raise ConfigurationError(f"{ENV_MANIFEST_SIGNING}: {action}: {code}") from None
        raise Unavailable(f"{ENV_MANIFEST_SIGNING}: {action}: {code or 'unknown error'}") from None
    except BotoCoreError as exc:
        raise Unavailable(f"{ENV_MANIFEST_SIGNING}: {action}: unreachable ({type(exc).__name__})") from None


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]!r}... ({len(text)} characters)"
