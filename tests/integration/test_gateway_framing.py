"""The local gateway's HTTP/1.1 framing, read timeout, connection bound and HEAD, over raw sockets.

Requests are written byte for byte, so each test sends exactly the framing it is about. A refused
request gets a 4xx whose JSON `error` names what was expected and what arrived, then the connection
closes; it never hangs, never reads past the body limit, and never reaches the function (which records
every invocation). The client socket always has a timeout, so a gateway that hangs fails the test
rather than the run.
"""

from __future__ import annotations

import http.client
import io
import json
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from maas.errors import ConfigurationError
from maas.local.gateway import LocalGateway
from maas.local.http_server import READ_TIMEOUT_SECONDS, IncomingRequest
from maas.local.sam import DEFAULT_ROUTE, SamTemplate
from maas.local.stack import ENV_LOCAL_READ_TIMEOUT, read_timeout_from_environment
from tests.integration.waiting import eventually
from tests.support.local_projects import EchoProject, GatewayFactory, gateway_starter

LIMIT = 4096
CLIENT_TIMEOUT = 10.0
TINY_READ_TIMEOUT = 0.3

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  RecordFile: {Type: String}
Globals:
  Function:
    Runtime: python3.12
    Environment:
      Variables:
        RECORD_FILE: !Ref RecordFile
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      Events:
        Upload: {Type: HttpApi, Properties: {Path: /upload, Method: POST}}
        Item: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: GET}}
        ItemHead: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: HEAD}}
        Report: {Type: HttpApi, Properties: {Path: /report, Method: GET}}
        Status: {Type: HttpApi, Properties: {Path: "/status/{code}", Method: ANY}}
        CatchAll: {Type: HttpApi}
"""

# /items/{id} answers HEAD as the app does: the GET's status and headers, Content-Length included, and
# no body; /items/sloppy returns its GET body on HEAD too, which the gateway must not write.
ECHO_APP = """\
import json
import os


def handler(event, context):
    with open(os.environ["RECORD_FILE"], "a") as record:
        record.write(event["routeKey"] + "\\n")
    method = event["requestContext"]["http"]["method"]
    parameters = event.get("pathParameters") or {}
    if "code" in parameters:
        return {"statusCode": int(parameters["code"]), "headers": {"X-Kind": "status"}, "body": "not empty"}
    if "id" in parameters:
        document = json.dumps({"id": parameters["id"], "padding": "x" * 100})
        headers = {"Content-Type": "application/json", "X-Item": parameters["id"]}
        if method == "HEAD" and parameters["id"] != "sloppy":
            headers["Content-Length"] = str(len(document))
            return {"statusCode": 200, "headers": headers, "body": ""}
        return {"statusCode": 200, "headers": headers, "body": document}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"routeKey": event["routeKey"], "method": method, "body": event.get("body"),
                                "headers": event["headers"]})}
"""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def project(tmp_path: Path) -> EchoProject:
    return EchoProject.write(tmp_path, TEMPLATE, ECHO_APP)


@pytest.fixture
def template(project: EchoProject) -> SamTemplate:
    return project.template()


@pytest.fixture
def start_gateway(
    project: EchoProject, template: SamTemplate, isolated_env: pytest.MonkeyPatch
) -> Iterator[GatewayFactory]:
    """Starts a gateway over the template with this file's body limit, without the $default route if asked."""
    with gateway_starter(project.root) as start:

        def start_framing(*, default_route: bool = True, **options: Any) -> LocalGateway:
            routes = [r for r in template.routes if default_route or r.path != DEFAULT_ROUTE]
            return start(template, routes=routes, max_body_bytes=LIMIT, **options)

        yield start_framing


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> LocalGateway:
    return start_gateway()


@contextmanager
def connected(gateway: LocalGateway) -> Iterator[socket.socket]:
    address = urlsplit(gateway.url)
    sock = socket.create_connection((address.hostname or "", address.port or 0), timeout=CLIENT_TIMEOUT)
    try:
        yield sock
    finally:
        sock.close()


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the gateway closes (a hang fails on the client timeout)."""
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def parse(raw: bytes, method: str = "POST") -> Answer:
    """The one answer in `raw`, all the gateway sent before it closed."""

    class _Received:
        def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
            return io.BytesIO(raw)

    response = http.client.HTTPResponse(_Received(), method=method)  # type: ignore[arg-type]
    response.begin()
    answer = Answer(response.status, response.headers, response.read())
    assert response.fp is None or response.fp.read() == b"", "bytes after the answer"
    return answer


def read_answer(sock: socket.socket, method: str = "POST") -> Answer:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return Answer(response.status, response.headers, response.read())


def exchange(gateway: LocalGateway, raw: bytes, method: str = "POST") -> Answer:
    """Send `raw` and read one answer; the client's side stays open meanwhile, so a gateway reading to
    EOF would hang here."""
    with connected(gateway) as sock:
        sock.sendall(raw)
        return read_answer(sock, method)


def refusal(gateway: LocalGateway, raw: bytes) -> tuple[int, str]:
    """The status and error of a refused request, checking that the gateway then closed."""
    with connected(gateway) as sock:
        sock.sendall(raw)
        answer = parse(read_to_end(sock))
    assert answer.headers["Connection"] == "close"
    document = answer.json()
    assert set(document) == {"message", "error"}
    return answer.status, document["error"]


def post(headers: str, body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    head = f"POST /upload {version}\r\nHost: local\r\nContent-Type: text/plain\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def chunked(body: bytes) -> bytes:
    return post("Transfer-Encoding: chunked\r\n", body)


def served(gateway: LocalGateway) -> int:
    """The status of an ordinary request (0 if the connection failed): the gateway still answers."""
    connection = http.client.HTTPConnection(urlsplit(gateway.url).netloc, timeout=CLIENT_TIMEOUT)
    try:
        connection.request("GET", "/items/1")
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


# ---- chunked bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"5\r\nhello\r\n0\r\n\r\n", "hello", id="one chunk"),
        pytest.param(b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", "hello", id="two chunks"),
        pytest.param(b"0005\r\nhello\r\n000\r\n\r\n", "hello", id="leading zeros"),
        pytest.param(b"A\r\nhellohello\r\n0\r\n\r\n", "hellohello", id="upper-case hex"),
        pytest.param(b"5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", id="chunk extensions"),
        pytest.param(b'5 ; q="a \\" b"\r\nhello\r\n0\r\n\r\n', "hello", id="a quoted extension"),
        pytest.param(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n", "hello", id="trailers"),
        pytest.param(b"0\r\n\r\n", None, id="no chunks"),
    ],
)
def test_a_well_formed_chunked_body_is_read_whole(
    gateway: LocalGateway, body: bytes, expected: str | None
) -> None:
    answer = exchange(gateway, chunked(body))

    assert answer.status == 200, answer.body
    assert answer.json()["body"] == expected
    assert "x-checksum" not in answer.json()["headers"]  # trailers are dropped, as API Gateway does


def test_transfer_encoding_is_matched_whatever_its_case(gateway: LocalGateway) -> None:
    answer = exchange(gateway, post("Transfer-Encoding: Chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"))

    assert (answer.status, answer.json()["body"]) == (200, "ok")


@pytest.mark.parametrize(
    ("size_line", "shown"),
    [
        pytest.param(b"-1", "'-1'", id="negative (the reported case)"),
        pytest.param(b"+5", "'+5'", id="a plus sign"),
        pytest.param(b"0x5", "'0x5'", id="a 0x prefix"),
        pytest.param(b" 5", "' 5'", id="leading space"),
        pytest.param(b"5 ", "'5 '", id="trailing space without an extension"),
        pytest.param(b"\t5", "'\\t5'", id="a tab"),
        pytest.param(b"5_0", "'5_0'", id="an underscore"),
        pytest.param("\u0665".encode(), None, id="a non-ASCII digit"),  # ARABIC-INDIC FIVE: int() takes it
        pytest.param(b"g", "'g'", id="not hexadecimal"),
        pytest.param(b"", "''", id="an empty line"),
        pytest.param(b"5;", "'5'", id="an extension without a name"),
        pytest.param(b"5;a b", "'5'", id="an extension that is not a token"),
    ],
)
def test_a_chunk_size_that_is_not_plain_hexadecimal_is_refused(
    gateway: LocalGateway, project: EchoProject, size_line: bytes, shown: str | None
) -> None:
    # The rest of a body follows, and the client keeps its side open: reading to EOF would hang.
    status, error = refusal(gateway, chunked(size_line + b"\r\n" + b"x" * (2 * LIMIT)))

    assert status == 400
    assert error.startswith(
        "chunk size: expected hexadecimal digits, then optional ;extensions and CRLF, got "
    )
    if shown is not None:
        assert error.endswith(shown)
    assert project.invocations() == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\r\n", id="a size past any limit"),
        pytest.param(b"1001\r\n", id="one chunk a byte over the limit"),
        pytest.param(b"800\r\n" + b"a" * 0x800 + b"\r\n801\r\n", id="chunks adding up to a byte over"),
    ],
)
def test_chunks_over_the_limit_are_refused_before_they_are_read(
    gateway: LocalGateway, project: EchoProject, body: bytes
) -> None:
    status, error = refusal(gateway, chunked(body))  # the over-limit chunk itself is never sent

    assert status == 413
    assert error == f"body: expected at most {LIMIT} bytes, got chunks adding up to more"
    assert project.invocations() == []


def test_chunks_adding_up_to_exactly_the_limit_are_accepted(gateway: LocalGateway) -> None:
    half = LIMIT // 2
    body = (
        f"{half:x}\r\n".encode() + b"a" * half + f"\r\n{half:x}\r\n".encode() + b"b" * half + b"\r\n0\r\n\r\n"
    )

    answer = exchange(gateway, chunked(body))

    assert answer.status == 200
    assert answer.json()["body"] == "a" * half + "b" * half


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(
            b"5\r\nhelloX\r\n0\r\n\r\n",
            "chunk: expected CRLF after its 5 bytes, got other bytes",
            id="missing CRLF",
        ),
        pytest.param(
            b"3\r\nhello\r\n0\r\n\r\n",
            "chunk: expected CRLF after its 3 bytes, got other bytes",
            id="longer than its size",
        ),
        pytest.param(
            b"5\r\nhello\n0\r\n\r\n",
            "chunk: expected CRLF after its 5 bytes, got other bytes",
            id="a bare LF after the data",
        ),
        pytest.param(
            b"5\nhello\r\n0\r\n\r\n",
            "chunk size line: expected it to end in CRLF, got a bare LF",
            id="a bare LF after the size",
        ),
        pytest.param(
            b"5;" + b"a" * 5000 + b"\r\n",
            "chunk size line: expected at most 4096 bytes ending in CRLF, got more",
            id="an endless extension",
        ),
        pytest.param(
            b"0\r\nnot a field\r\n\r\n",
            "trailer: expected a 'name: value' line, got a line that is not one",
            id="a malformed trailer",
        ),
        pytest.param(
            b"0\r\n" + b"X-T: 1\r\n" * 101 + b"\r\n",
            "trailers: expected at most 100 lines, got more",
            id="too many trailers",
        ),
        pytest.param(
            b"0\r\nX-T: 1\n\r\n",
            "trailer line: expected it to end in CRLF, got a bare LF",
            id="a bare LF trailer",
        ),
    ],
)
def test_broken_chunk_framing_is_refused(
    gateway: LocalGateway, project: EchoProject, body: bytes, error: str
) -> None:
    assert refusal(gateway, chunked(body)) == (400, error)
    assert project.invocations() == []


def test_a_client_gone_mid_chunk_is_dropped_and_others_are_still_served(
    gateway: LocalGateway, project: EchoProject
) -> None:
    with connected(gateway) as sock:
        sock.sendall(chunked(b"10\r\nonly part"))
        sock.shutdown(socket.SHUT_WR)

        assert read_to_end(sock) == b""  # nothing to answer: nobody is left to read it

    assert served(gateway) == 200
    assert project.invocations() == ["GET /items/{id}"]


# ---- Content-Length and Transfer-Encoding


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        pytest.param(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            400,
            "Content-Length and Transfer-Encoding: expected at most one of them, got both",
            id="both (request smuggling)",
        ),
        pytest.param(
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            400,
            "Content-Length and Transfer-Encoding: expected at most one of them, got both",
            id="both, the other way round",
        ),
        *(
            pytest.param(
                f"Transfer-Encoding: {value}\r\n",
                400,
                f"Transfer-Encoding: expected chunked alone, got {shown}",
                id=f"Transfer-Encoding {value!r}",
            )
            for value, shown in [
                ("gzip", "'gzip'"),
                ("identity", "'identity'"),
                ("gzip, chunked", "'gzip, chunked'"),
                ("chunked, gzip", "'chunked, gzip'"),
                ("chunked, chunked", "'chunked, chunked'"),
                ("chunked,", "'chunked, '"),
                ("xchunked", "'xchunked'"),
                ("", "''"),
            ]
        ),
        pytest.param(
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            400,
            "Transfer-Encoding: expected chunked alone, got 'gzip, chunked'",
            id="Transfer-Encoding over two headers",
        ),
        *(
            pytest.param(
                f"Content-Length: {value}\r\n",
                400,
                f"Content-Length: expected a decimal number of bytes, got {shown}",
                id=f"Content-Length {value!r}",
            )
            for value, shown in [
                ("-1", "'-1'"),
                ("+5", "'+5'"),
                ("5.0", "'5.0'"),
                ("0x10", "'0x10'"),
                ("1e3", "'1e3'"),
                ("1_0", "'1_0'"),
                ("five", "'five'"),
                ("", "''"),
                ("²", "'²'"),  # a digit to str.isdigit()
                ("5, ", "''"),
            ]
        ),
        pytest.param(
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            400,
            "Content-Length: expected one length, got 2 different ones",
            id="two Content-Length headers that disagree",
        ),
        pytest.param(
            "Content-Length: 5, 6\r\n",
            400,
            "Content-Length: expected one length, got 2 different ones",
            id="a Content-Length list that disagrees",
        ),
        pytest.param(
            f"Content-Length: {LIMIT + 1}\r\n",
            413,
            f"body: expected at most {LIMIT} bytes, got a Content-Length of {LIMIT + 1}",
            id="a byte over the limit",
        ),
        pytest.param(
            f"Content-Length: {'9' * 5000}\r\n",
            413,
            f"body: expected at most {LIMIT} bytes, got a Content-Length of over 10^18",
            id="a length of 5000 digits",
        ),
        pytest.param(
            "Content-Length : 5\r\n",
            400,
            "headers: expected 'name: value' lines, got a line that is not one",
            id="space before the colon (a hidden Content-Length)",
        ),
        pytest.param(
            "X-Note: one\r\n line folded\r\n",
            400,
            "header X-Note: expected one line, got a folded value",
            id="a folded header",
        ),
        pytest.param(
            "X-Note: one\r\nno colon here\r\nContent-Length: 5\r\n",
            400,
            "headers: expected 'name: value' lines, got a line that is not one",
            id="a line without a colon",
        ),
    ],
)
def test_framing_headers_that_do_not_say_one_length_are_refused(
    gateway: LocalGateway, project: EchoProject, headers: str, status: int, error: str
) -> None:
    assert refusal(gateway, post(headers, b"hello")) == (status, error)
    assert project.invocations() == []


def test_transfer_encoding_in_an_http_1_0_request_is_refused(gateway: LocalGateway) -> None:
    raw = post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", version="HTTP/1.0")

    assert refusal(gateway, raw) == (400, "Transfer-Encoding: expected none in an HTTP/1.0 request, got one")


@pytest.mark.parametrize(
    "headers",
    [
        "Content-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 005\r\n",
        "Content-Length:  5 \r\n",
    ],
)
def test_one_length_said_more_than_once_is_accepted(gateway: LocalGateway, headers: str) -> None:
    answer = exchange(gateway, post(headers + "Connection: close\r\n", b"hello"))

    assert (answer.status, answer.json()["body"]) == (200, "hello")


def test_a_body_exactly_at_the_limit_is_accepted(gateway: LocalGateway) -> None:
    answer = exchange(gateway, post(f"Content-Length: {LIMIT}\r\nConnection: close\r\n", b"z" * LIMIT))

    assert (answer.status, len(answer.json()["body"])) == (200, LIMIT)


def test_an_over_limit_body_is_refused_before_100_continue(
    gateway: LocalGateway, project: EchoProject
) -> None:
    with connected(gateway) as sock:
        sock.sendall(post(f"Content-Length: {LIMIT + 1}\r\nExpect: 100-continue\r\n"))
        raw = read_to_end(sock)

    # 413 first, not 100: the client is never invited to send the body (http.client would skip a 100).
    assert raw.startswith(b"HTTP/1.1 413 ")
    assert project.invocations() == []


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("http://[", 400),
        ("*", 400),
        ("items/1", 400),
        ("ftp://host/items/1", 400),
        ("http://host/items/1", 200),
    ],
)
def test_a_request_target_is_a_path_or_an_absolute_url(
    gateway: LocalGateway, target: str, status: int
) -> None:
    answer = exchange(gateway, f"GET {target} HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n".encode())

    assert answer.status == status
    if status == 400:
        assert answer.json()["error"].startswith("request target: expected /path or an http(s) URL, got ")


def test_the_gateways_handle_never_raises(gateway: LocalGateway) -> None:
    """What the HTTP layer refuses still gets an answer when it reaches handle() another way."""
    request = IncomingRequest(method="GET", target="http://[", headers=[], body=b"", source_ip="127.0.0.1")

    response = gateway.handle(request)

    assert (response.status, json.loads(response.body)) == (500, {"message": "Internal Server Error"})


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"GET /items/1 HTTP/1.1.1", 400),
        (b"GET /items/1 HTTP/99999999999.1", 400),
        (b"GET /items/1 HTTP/2.0", 505),
        (b"BREW /items/1 HTTP/1.1", 501),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1", 414),
    ],
)
def test_a_bad_request_line_is_answered_in_the_gateways_json(
    gateway: LocalGateway, request_line: bytes, status: int
) -> None:
    answer = exchange(gateway, request_line + b"\r\nHost: local\r\n\r\n")

    assert answer.status == status
    assert "message" in answer.json()
    assert answer.headers["Connection"] == "close"


# ---- the read timeout


@pytest.fixture
def impatient(start_gateway: GatewayFactory) -> LocalGateway:
    return start_gateway(read_timeout_seconds=TINY_READ_TIMEOUT)


def test_the_default_read_timeout_is_http_apis_30_seconds() -> None:
    assert READ_TIMEOUT_SECONDS == 30.0


def test_an_idle_connection_is_closed_without_an_answer(impatient: LocalGateway) -> None:
    with connected(impatient) as sock:
        assert read_to_end(sock) == b""


def test_an_idle_keep_alive_connection_is_closed_after_its_request(impatient: LocalGateway) -> None:
    with connected(impatient) as sock:
        sock.sendall(b"GET /items/1 HTTP/1.1\r\nHost: local\r\n\r\n")
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        assert (response.status, len(response.read()) > 0) == (200, True)

        assert sock.recv(1) == b""  # then nothing more comes, and the gateway closes


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"GET /ite", id="in the request line"),
        pytest.param(b"GET /items/1 HTTP/1.1\r\nHost: loc", id="in the headers"),
        pytest.param(post("Content-Length: 10\r\n", b"abc"), id="in a sized body"),
        pytest.param(chunked(b"a\r\nabc"), id="in a chunk"),
        pytest.param(chunked(b"3\r\nabc\r\n"), id="between chunks"),
        pytest.param(chunked(b"0\r\nX-T: 1\r\n"), id="in the trailers"),
    ],
)
def test_a_stalled_request_is_answered_408_and_closed(
    impatient: LocalGateway, project: EchoProject, partial: bytes
) -> None:
    with connected(impatient) as sock:
        sock.sendall(partial)
        answer = parse(read_to_end(sock))

    assert (answer.status, answer.headers["Connection"]) == (408, "close")
    error = answer.json()["error"]
    assert error.startswith(f"request: expected it whole within {TINY_READ_TIMEOUT:g} s, got ")
    assert error.endswith(" bytes of it in that time")
    assert project.invocations() == []


def test_a_client_trickling_bytes_is_cut_off_at_the_deadline(impatient: LocalGateway) -> None:
    """Slowloris: each byte arrives well within the timeout, the whole request never does."""
    with connected(impatient) as sock:
        sock.sendall(b"GET /items/1 HTTP/1.1\r\nHost: local\r\nX-Slow: ")
        for _ in range(100):  # far past the deadline, if the gateway let it run on
            readable, _, _ = select.select([sock], [], [], TINY_READ_TIMEOUT / 4)
            if readable:
                break
            sock.sendall(b"a")
        answer = parse(read_to_end(sock))

    assert answer.status == 408


def test_stalled_clients_do_not_keep_others_from_being_served(start_gateway: GatewayFactory) -> None:
    gateway = start_gateway(read_timeout_seconds=5.0)
    address = urlsplit(gateway.url)
    sockets = [
        socket.create_connection((address.hostname or "", address.port or 0), timeout=CLIENT_TIMEOUT)
        for _ in range(20)
    ]
    try:
        for sock in sockets:
            sock.sendall(post("Content-Length: 100\r\n", b"only part"))

        assert [served(gateway) for _ in range(3)] == [200, 200, 200]
    finally:
        for sock in sockets:
            sock.close()


def test_past_the_connection_bound_a_client_is_answered_429_until_a_slot_frees(
    start_gateway: GatewayFactory,
) -> None:
    gateway = start_gateway(read_timeout_seconds=TINY_READ_TIMEOUT * 3, max_connections=2)
    with connected(gateway) as first, connected(gateway) as second:
        first.sendall(b"GET /items/1 HTTP/1.1\r\n")
        second.sendall(b"GET /items/1 HTTP/1.1\r\n")
        time.sleep(0.05)  # both are accepted and each holds its thread

        with connected(gateway) as third:
            refused = parse(read_to_end(third))

        assert refused.status == 429
        assert refused.json() == {
            "message": "Too Many Requests",
            "error": "connections: expected at most 2 open at once, got one more",
        }
        # The stalled two are dropped at the read timeout, which frees their slots.
        assert (parse(read_to_end(first)).status, parse(read_to_end(second)).status) == (408, 408)

    eventually(lambda: served(gateway) == 200, "a freed slot to serve a request")


def test_the_read_timeout_is_a_positive_number(project: EchoProject, template: SamTemplate) -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="read_timeout_seconds: expected a positive number"):
            LocalGateway(template.routes, root=project.root, read_timeout_seconds=bad)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, READ_TIMEOUT_SECONDS), ("", READ_TIMEOUT_SECONDS), ("2.5", 2.5), (" 60 ", 60.0)],
)
def test_make_serve_reads_its_read_timeout_from_the_environment(value: str | None, seconds: float) -> None:
    environ = {} if value is None else {ENV_LOCAL_READ_TIMEOUT: value}

    assert read_timeout_from_environment(environ) == seconds


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "1e400"])
def test_a_read_timeout_setting_that_is_no_positive_number_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{ENV_LOCAL_READ_TIMEOUT}: expected a positive number"):
        read_timeout_from_environment({ENV_LOCAL_READ_TIMEOUT: value})


# ---- HEAD


class _KeptOpen(io.BufferedReader):
    """One reader for several answers on a connection: http.client closes its file after each."""

    def close(self) -> None:
        pass


def answers(sock: socket.socket, requests: list[tuple[str, str]]) -> list[Answer]:
    """Send the requests at once (pipelined), then read one answer each, in order: a body written
    where HTTP says there is none would be read as the start of the next answer, and fail it."""
    sock.sendall(
        b"".join(f"{method} {path} HTTP/1.1\r\nHost: local\r\n\r\n".encode() for method, path in requests)
    )
    reader = _KeptOpen(socket.SocketIO(sock, "rb"))

    class _Shared:
        def makefile(self, *args: Any, **kwargs: Any) -> io.BufferedReader:
            return reader

    result = []
    for method, _ in requests:
        response = http.client.HTTPResponse(_Shared(), method=method)  # type: ignore[arg-type]
        response.begin()
        result.append(Answer(response.status, response.headers, response.read()))
    return result


def head_then_get(gateway: LocalGateway, path: str) -> tuple[Answer, Answer]:
    with connected(gateway) as sock:
        head, get = answers(sock, [("HEAD", path), ("GET", path)])
    return head, get


def test_head_on_a_head_route_keeps_the_gets_headers_and_length_without_a_body(gateway: LocalGateway) -> None:
    head, get = head_then_get(gateway, "/items/7")

    assert (head.status, get.status) == (200, 200)
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.body))
    assert head.headers["X-Item"] == get.headers["X-Item"] == "7"
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


def test_head_never_writes_the_body_a_function_returned(gateway: LocalGateway) -> None:
    head, get = head_then_get(gateway, "/items/sloppy")

    assert (head.status, head.body) == (200, b"")
    assert head.headers["Content-Length"] == str(len(get.body))
    assert get.json()["id"] == "sloppy"


def test_head_on_a_get_only_route_goes_where_http_api_sends_it(
    start_gateway: GatewayFactory, project: EchoProject
) -> None:
    """HTTP API matches HEAD to HEAD and ANY routes only: a GET route does not answer it."""
    with_default = start_gateway()
    without_default = start_gateway(default_route=False)

    to_default, _ = head_then_get(with_default, "/report")
    not_found, get = head_then_get(without_default, "/report")

    assert (to_default.status, to_default.body) == (200, b"")
    assert (not_found.status, not_found.body) == (404, b"")
    assert not_found.headers["Content-Length"] == str(len(json.dumps({"message": "Not Found"})))
    assert get.status == 200
    assert project.invocations() == ["$default", "GET /report", "GET /report"]


def test_head_on_an_any_route_reaches_it(gateway: LocalGateway) -> None:
    head, _ = head_then_get(gateway, "/status/200")

    assert (head.status, head.body, head.headers["X-Kind"]) == (200, b"", "status")


@pytest.mark.parametrize("code", [204, 304])
def test_statuses_without_a_body_never_carry_one(gateway: LocalGateway, code: int) -> None:
    with connected(gateway) as sock:
        statuses = [
            answer.status for answer in answers(sock, [("GET", f"/status/{code}"), ("GET", "/items/1")])
        ]

    assert statuses == [code, 200]


@pytest.mark.parametrize("code", [100, 101, 199])
def test_an_interim_status_from_a_function_is_a_gateway_500(gateway: LocalGateway, code: int) -> None:
    answer = exchange(
        gateway, f"GET /status/{code} HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n".encode(), "GET"
    )

    assert (answer.status, answer.json()) == (500, {"message": "Internal Server Error"})
