"""SigV4 verification for AWS_IAM routes, as API Gateway does it before it invokes a function.

The signature is recomputed with botocore's own signer from what arrived (method, path, query, the
headers the client listed as signed, the body) and the client's timestamp, under the secret of a key
the local stack knows, then compared in constant time. Both signed headers (Authorization) and
presigned URLs (X-Amz-* query parameters) are accepted. Refusals carry API Gateway's own messages.

Locally the known keys are the ones botocore resolves in the emulator's process (with the embedded
store, AWS_ACCESS_KEY_ID=testing and AWS_SECRET_ACCESS_KEY=testing): IAM itself is not consulted, so
any principal that can sign with those keys is allowed, as an IAM policy granting execute-api:Invoke
on the whole API would.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError

logger = logging.getLogger(__name__)

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = timedelta(minutes=15)
MAX_PRESIGNED_EXPIRY_SECONDS = 7 * 24 * 60 * 60
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_USER_NAME = "maas-local"
CONTENT_SHA256_HEADER = "x-amz-content-sha256"
SECURITY_TOKEN_HEADER = "x-amz-security-token"
SIGNATURE_QUERY_PARAMETER = "X-Amz-Signature"
# Strict shapes: strptime and int() also take single-digit fields, signs, underscores and non-ASCII digits.
_BASIC_TIMESTAMP = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_EXPIRY_SECONDS = re.compile(r"[0-9]{1,7}")

# API Gateway's messages for refused SigV4 requests (HTTP 403, {"message": ...}).
MISSING_AUTHENTICATION = "Forbidden"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


class SignatureRejectedError(Exception):
    """A request an AWS_IAM route refuses: `message` is API Gateway's answer, `reason` says why, for logs."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(reason or message)
        self.message = message
        self.reason = reason or message


@dataclass(frozen=True, slots=True)
class LocalCredentials:
    """A key pair the local gateway accepts, and the IAM identity API Gateway reports for its caller."""

    access_key: str
    secret_key: str
    session_token: str | None = None
    account_id: str = LOCAL_ACCOUNT_ID
    user_arn: str | None = None

    @property
    def caller_arn(self) -> str:
        return self.user_arn or f"arn:aws:iam::{self.account_id}:user/{LOCAL_USER_NAME}"

    def authorizer_context(self) -> dict[str, Any]:
        """requestContext.authorizer.iam of a payload-2.0 event for a caller signing with these keys."""
        return {
            "accessKey": self.access_key,
            "accountId": self.account_id,
            "callerId": self.access_key,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": self.caller_arn,
            "userId": self.access_key,
        }


def credentials_from_environment(account_id: str = LOCAL_ACCOUNT_ID) -> LocalCredentials | None:
    """The key pair botocore resolves in this process (environment, profile ...), or None without one."""
    try:
        credentials = botocore.session.get_session().get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except BotoCoreError as exc:
        logger.warning("no local AWS credentials for AWS_IAM routes: %s", exc)
        return None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        return None
    return LocalCredentials(frozen.access_key, frozen.secret_key, frozen.token, account_id)


@dataclass(frozen=True, slots=True)
class _Signature:
    """The parts of a SigV4 signature as the client sent them, in a header or a presigned query."""

    access_key: str
    scope_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str
    session_token: str | None
    expires_seconds: int | None  # presigned URLs only

    @property
    def presigned(self) -> bool:
        return self.expires_seconds is not None


def verify_sigv4(
    *,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    credentials: Mapping[str, LocalCredentials],
    region: str,
    now: datetime,
) -> LocalCredentials:
    """The credentials that signed this request for execute-api in `region`; SignatureRejectedError if none.

    `url` is the URL as the client addressed it (scheme and Host, then the raw path and query).
    """
    signature = _signature(url, headers)
    if signature.service != SERVICE:
        raise SignatureRejectedError(f"Credential should be scoped to correct service: '{SERVICE}'. ")
    if signature.region != region:
        raise SignatureRejectedError(
            f"Credential should be scoped to a valid region, not '{signature.region}'. "
        )
    signed_at = _timestamp(signature.timestamp)
    if signature.scope_date != signature.timestamp[:8]:
        raise SignatureRejectedError(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{signature.scope_date}' != '{signature.timestamp[:8]}', from '{signature.timestamp}'."
        )
    _check_time(signature, signed_at, now)
    known = credentials.get(signature.access_key)
    if known is None:
        raise SignatureRejectedError(INVALID_TOKEN, f"access key {signature.access_key} is not a local key")
    if signature.session_token is not None and signature.session_token != known.session_token:
        raise SignatureRejectedError(INVALID_TOKEN, "the session token is not the local key's")
    if "host" not in signature.signed_headers:
        raise SignatureRejectedError(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    declared_hash = _header(headers, CONTENT_SHA256_HEADER)
    if declared_hash is not None and declared_hash != hashlib.sha256(body).hexdigest():
        raise SignatureRejectedError(SIGNATURE_MISMATCH, f"{CONTENT_SHA256_HEADER} is not the body's hash")

    # SigV4 signs the path with '.', '..' and empty segments removed, while the gateway routes the path as
    # sent: a signature for /a/b would otherwise also cover /a/x/../b and /a//b.
    segments = urlsplit(url).path.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments[:-1]) or segments[-1:] in ([".."], ["."]):
        raise SignatureRejectedError(SIGNATURE_MISMATCH, "the path has empty, '.' or '..' segments")
    expected = _expected_signature(
        method, url, headers, body, signature=signature, known=known, region=region
    )
    if not hmac.compare_digest(expected, signature.signature.lower()):
        raise SignatureRejectedError(SIGNATURE_MISMATCH, "the signature does not match the request")
    return known


class _ReceivedRequestSigner(SigV4Auth):
    """botocore's signer, restricted to the headers the client said it signed (whatever botocore would
    pick itself), so that the canonical request is the client's."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str, signed_headers: Sequence[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed_headers = frozenset(signed_headers)

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        selected = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed_headers:
                selected[name.lower()] = value
        return selected


def _expected_signature(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    signature: _Signature,
    known: LocalCredentials,
    region: str,
) -> str:
    signed_url = _without_signature_parameter(url) if signature.presigned else url
    request = AWSRequest(method=method, url=signed_url, data=body)
    for name, value in headers:
        if name.lower() in signature.signed_headers:
            request.headers[name] = value  # HTTPHeaders appends: a repeated header keeps every value
    request.context["timestamp"] = signature.timestamp
    signer = _ReceivedRequestSigner(
        ReadOnlyCredentials(known.access_key, known.secret_key, known.session_token),
        region,
        signature.signed_headers,
    )
    canonical_request = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical_request), request)


def _signature(url: str, headers: Sequence[tuple[str, str]]) -> _Signature:
    authorization = _header(headers, "authorization")
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if authorization is not None:
        return _header_signature(authorization, headers)
    if "X-Amz-Algorithm" in query:
        return _query_signature(query)
    raise SignatureRejectedError(MISSING_AUTHENTICATION, "no Authorization header and no presigned query")


def _header_signature(authorization: str, headers: Sequence[tuple[str, str]]) -> _Signature:
    algorithm, _, rest = authorization.strip().partition(" ")
    fields = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    timestamp = _header(headers, "x-amz-date") or _date_header_timestamp(_header(headers, "date"))
    missing = [
        f"Authorization header requires '{key}' parameter."
        for key in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(key)
    ]
    if timestamp is None and _header(headers, "date") is not None:
        missing.append(
            "Date header: expected an HTTP date between years 1 and 9999 in UTC "
            "(e.g. 'Fri, 31 Dec 2027 23:59:59 GMT'), got one that is not."
        )
    elif timestamp is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if algorithm != ALGORITHM or missing:
        # The header is never echoed: it may be a bearer token meant for another route.
        raise SignatureRejectedError(
            " ".join(missing) or f"Authorization header: expected the {ALGORITHM} algorithm",
            f"Authorization is not {ALGORITHM} with Credential, SignedHeaders and Signature",
        )
    assert timestamp is not None
    return _parsed_signature(
        fields["Credential"],
        fields["SignedHeaders"],
        fields["Signature"],
        timestamp,
        session_token=_header(headers, SECURITY_TOKEN_HEADER),
        expires_seconds=None,
    )


def _query_signature(query: Mapping[str, str]) -> _Signature:
    required = ("X-Amz-Credential", "X-Amz-SignedHeaders", SIGNATURE_QUERY_PARAMETER, "X-Amz-Date")
    missing = [f"AWS query-string parameters must include '{key}'." for key in required if not query.get(key)]
    if query.get("X-Amz-Algorithm") != ALGORITHM or missing:
        raise SignatureRejectedError(
            " ".join(missing) or f"X-Amz-Algorithm: expected {ALGORITHM}",
            "the presigned query is incomplete",
        )
    expires_text = query.get("X-Amz-Expires", "900")
    expires = int(expires_text) if _EXPIRY_SECONDS.fullmatch(expires_text) else -1
    if not 0 < expires <= MAX_PRESIGNED_EXPIRY_SECONDS:
        raise SignatureRejectedError(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_EXPIRY_SECONDS}."
        )
    return _parsed_signature(
        query["X-Amz-Credential"],
        query["X-Amz-SignedHeaders"],
        query[SIGNATURE_QUERY_PARAMETER],
        query["X-Amz-Date"],
        session_token=query.get("X-Amz-Security-Token"),
        expires_seconds=expires,
    )


def _parsed_signature(
    credential: str,
    signed_headers: str,
    signature: str,
    timestamp: str,
    *,
    session_token: str | None,
    expires_seconds: int | None,
) -> _Signature:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != TERMINATOR or not all(parts):
        raise SignatureRejectedError(
            f"Credential should be <access key>/<YYYYMMDD>/<region>/{SERVICE}/{TERMINATOR}.",
            "the Credential is malformed",
        )
    access_key, scope_date, region, service, _ = parts
    return _Signature(
        access_key=access_key,
        scope_date=scope_date,
        region=region,
        service=service,
        signed_headers=tuple(name.strip().lower() for name in signed_headers.split(";") if name.strip()),
        signature=signature,
        timestamp=timestamp,
        session_token=session_token,
        expires_seconds=expires_seconds,
    )


def _timestamp(text: str) -> datetime:
    try:
        if not _BASIC_TIMESTAMP.fullmatch(text):
            raise ValueError(text)
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise SignatureRejectedError(
            "X-Amz-Date must be in the ISO 8601 basic format yyyyMMdd'T'HHmmss'Z'.",
            "the request's timestamp is malformed",
        ) from None


def _check_time(signature: _Signature, signed_at: datetime, now: datetime) -> None:
    """Header signatures hold for 15 minutes either side of now; presigned URLs until they expire."""
    stamp = now.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    if signed_at > now + MAX_CLOCK_SKEW:
        latest = (now + MAX_CLOCK_SKEW).strftime(TIMESTAMP_FORMAT)
        raise SignatureRejectedError(
            f"Signature not yet current: {signature.timestamp} is still later than {latest} "
            f"({stamp} + 15 min.)"
        )
    if signature.expires_seconds is not None:  # presigned
        try:
            expires_at = signed_at + timedelta(seconds=signature.expires_seconds)
        except OverflowError:  # past year 9999: later than any now
            expires_at = datetime.max.replace(tzinfo=UTC)
        if now > expires_at:
            raise SignatureRejectedError(
                f"Signature expired: {expires_at.strftime(TIMESTAMP_FORMAT)} is now earlier than {stamp}."
            )
    elif signed_at < now - MAX_CLOCK_SKEW:
        earliest = (now - MAX_CLOCK_SKEW).strftime(TIMESTAMP_FORMAT)
        raise SignatureRejectedError(
            f"Signature expired: {signature.timestamp} is now earlier than {earliest} ({stamp} - 15 min.)"
        )


def _date_header_timestamp(value: str | None) -> str | None:
    """SigV4 allows an HTTP Date header in place of X-Amz-Date; None when it is no date this side of year
    10000 (a far offset such as -2359 on 31 Dec 9999 overflows when taken to UTC)."""
    if value is None:
        return None
    try:
        utc = parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        return None
    # Not strftime: its %Y does not pad years before 1000 to four digits on every platform.
    return f"{utc.year:04d}{utc.month:02d}{utc.day:02d}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z"


def _without_signature_parameter(url: str) -> str:
    """A presigned URL signs every query parameter except X-Amz-Signature itself."""
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote(pair.partition("=")[0]) != SIGNATURE_QUERY_PARAMETER
    ]
    return urlunsplit(parts._replace(query="&".join(kept)))


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """A header's value, repeated ones joined by commas as HTTP allows; None when absent."""
    values = [value for key, value in headers if key.lower() == name]
    return ",".join(values) if values else None
