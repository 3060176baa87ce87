"""A client of the Lambda Runtime API (version 2018-06-01), standard library only, that can stream.

The managed Python runtime posts a handler's whole result; API Gateway can only stream what a function
posts in the Runtime API's streaming mode, which the Node.js runtime speaks and Python's does not. This
client speaks it, as AWS's own runtimes do (aws-lambda-nodejs-runtime-interface-client, the Rust
lambda_runtime): one chunked POST to /invocation/{id}/response with

    Lambda-Runtime-Function-Response-Mode: streaming
    Content-Type: application/vnd.awslambda.http-integration-response
    Transfer-Encoding: chunked
    Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body

whose body is the JSON metadata prelude {"statusCode", "headers", "cookies"}, eight NUL bytes, then the
body's chunks, each sent the moment it exists. A failure after the first byte cannot change the status
any more: it is reported in the two trailers (the error type, and base64 of the error document).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

API_VERSION = "2018-06-01"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
STREAMING_MODE = "streaming"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
HTTP_INTEGRATION_RESPONSE = "application/vnd.awslambda.http-integration-response"
ERROR_MEDIA_TYPE = "application/vnd.aws.lambda.error+json"
PRELUDE_DELIMITER = b"\0" * 8


@dataclass(frozen=True, slots=True)
class Invocation:
    """One event from /invocation/next with the headers that describe it."""

    request_id: str
    event: bytes
    deadline_ms: int
    invoked_function_arn: str
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionError:
    """Lambda's error document: errorType and errorMessage, plus the frames of the stack."""

    error_type: str
    message: str
    stack_trace: list[str] = field(default_factory=list)

    def document(self) -> bytes:
        return json.dumps(
            {"errorMessage": self.message, "errorType": self.error_type, "stackTrace": self.stack_trace}
        ).encode()


def http_integration_prelude(status: int, headers: Mapping[str, str]) -> bytes:
    """The metadata API Gateway reads before the body: status, headers, and Set-Cookie apart as cookies;
    then the eight NUL bytes that end it."""
    cookies = [value for name, value in headers.items() if name.lower() == "set-cookie"]
    plain = {name: value for name, value in headers.items() if name.lower() != "set-cookie"}
    prelude = {"statusCode": status, "headers": plain, "cookies": cookies}
    return json.dumps(prelude, separators=(",", ":")).encode() + PRELUDE_DELIMITER


class RuntimeApiError(Exception):
    """The Runtime API answered a call with a status it does not answer a well-behaved runtime with."""


class RuntimeApiClient:
    """The Runtime API at `address` (AWS_LAMBDA_RUNTIME_API, host:port), over one kept-alive connection."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._host = host or address
        self._port = int(port) if host and port.isdigit() else 80
        self._connection: http.client.HTTPConnection | None = None

    def next_invocation(self) -> Invocation:
        """Waits, as long as it takes, for the next event."""
        response = self._request("GET", f"/{API_VERSION}/runtime/invocation/next")
        body = response.read()
        headers = response.headers
        return Invocation(
            request_id=headers["Lambda-Runtime-Aws-Request-Id"],
            event=body,
            deadline_ms=int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            invoked_function_arn=headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
            trace_id=headers.get("Lambda-Runtime-Trace-Id"),
            client_context=headers.get("Lambda-Runtime-Client-Context"),
            cognito_identity=headers.get("Lambda-Runtime-Cognito-Identity"),
        )

    def post_response(self, request_id: str, body: bytes) -> None:
        """A whole (buffered) result."""
        self._request("POST", self._invocation_path(request_id, "response"), body).read()

    def post_error(self, request_id: str, error: FunctionError) -> None:
        path = self._invocation_path(request_id, "error")
        self._request("POST", path, error.document(), self._error_headers(error)).read()

    def post_init_error(self, error: FunctionError) -> None:
        path = f"/{API_VERSION}/runtime/init/error"
        self._request("POST", path, error.document(), self._error_headers(error)).read()

    def restore_next(self) -> None:
        """SnapStart: init is done and the hooks have run. Lambda snapshots the function while this call
        waits, and it returns in each copy restored from the snapshot."""
        response = self._request("GET", f"/{API_VERSION}/runtime/restore/next")
        response.read()
        # The connection was made before the snapshot; a restored copy makes its own.
        self._disconnect()
        if response.status != 200:
            raise RuntimeApiError(f"/runtime/restore/next: expected 200, got {response.status}")

    def post_restore_error(self, error: FunctionError) -> None:
        path = f"/{API_VERSION}/runtime/restore/error"
        self._request("POST", path, error.document(), self._error_headers(error)).read()

    def stream_response(
        self,
        request_id: str,
        status: int,
        headers: Mapping[str, str],
        chunks: Iterable[bytes],
        failure: Callable[[], FunctionError | None] = lambda: None,
    ) -> None:
        """Posts the prelude, then each chunk the moment `chunks` yields it; once they end, `failure()`
        says whether the stream broke (sent as the error trailers). The caller closes `chunks`."""
        connection = self._connect()
        try:
            path = self._invocation_path(request_id, "response")
            connection.putrequest("POST", path, skip_accept_encoding=True)
            connection.putheader("Content-Type", HTTP_INTEGRATION_RESPONSE)
            connection.putheader(RESPONSE_MODE_HEADER, STREAMING_MODE)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.putheader("Trailer", f"{ERROR_TYPE_HEADER}, {ERROR_BODY_TRAILER}")
            connection.endheaders()
            _send_chunk(connection, http_integration_prelude(status, headers))
            for chunk in chunks:
                if chunk:  # an empty chunk would end the body
                    _send_chunk(connection, chunk)
            connection.send(b"0\r\n" + _trailer_lines(failure()) + b"\r\n")
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            self._disconnect()
            raise

    # ---- the connection

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> http.client.HTTPResponse:
        connection = self._connect()
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            return connection.getresponse()
        except (OSError, http.client.HTTPException):
            self._disconnect()
            raise

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            # No timeout: /next answers when an event arrives, which may be hours from now.
            connection = http.client.HTTPConnection(self._host, self._port)
            connection.connect()
            # A chunk is a small write, which Nagle's algorithm would hold until the previous one is acked.
            assert connection.sock is not None
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection = connection
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        self._disconnect()

    @staticmethod
    def _invocation_path(request_id: str, what: str) -> str:
        return f"/{API_VERSION}/runtime/invocation/{quote(request_id, safe='')}/{what}"

    @staticmethod
    def _error_headers(error: FunctionError) -> dict[str, str]:
        return {"Content-Type": ERROR_MEDIA_TYPE, ERROR_TYPE_HEADER: _header_safe(error.error_type)}


def _send_chunk(connection: http.client.HTTPConnection, data: bytes) -> None:
    connection.send(b"%x\r\n%b\r\n" % (len(data), data))


def _trailer_lines(error: FunctionError | None) -> bytes:
    if error is None:
        return b""
    encoded = base64.b64encode(error.document()).decode("ascii")
    return (
        f"{ERROR_TYPE_HEADER}: {_header_safe(error.error_type)}\r\n{ERROR_BODY_TRAILER}: {encoded}\r\n"
    ).encode("ascii")


def _header_safe(text: str) -> str:
    """A header value from an exception's name: printable ASCII on one line."""
    return "".join(c for c in text if " " <= c <= "~")[:200] or "Unknown"
