"""What `make serve` prints once the local stack is up: where it serves, which store holds the models,
which routes need what authorization, a ready-to-paste infer call and how to drive the events.

Pure text from facts the stack hands over; nothing here starts or asks anything.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from maas.config import ENV_BUCKET
from maas.local.object_store import EMBEDDED_REGION, StoreChoice
from maas.local.queues import SqsPoller
from maas.local.sam import SamTemplate, TemplateRoute
from maas.local.template_reader import TEMPLATE_FILE
from maas.local.template_routes import TemplateRoutes

ASYNC_QUEUE_RESOURCE = "AsyncQueue"
LLM_EXAMPLE_QUESTION = "What is the capital of France?"
# publishing: in the background; ready: published now or found in the store; failed; off: not asked for.
LlmState = Literal["publishing", "ready", "failed", "off"]
# A curl command that signs a call to the given path for an AWS_IAM route.
SigningExample = Callable[[str], str]


def example_infer_body(rows: int = 3, features: int = 10) -> dict[str, Any]:
    """A V2 request for seed-mlp: FP32 [rows, features], row-major, deterministic values."""
    data = [round(((i * 7) % 23) / 10 - 1.0, 1) for i in range(rows * features)]
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, features], "data": data}]}


def curl_example(
    url: str, routes: Sequence[TemplateRoute], model: str, signing_example: SigningExample | None
) -> str:
    """An infer call of `model` as curl, signed or with a bearer token when the route requires one."""
    return curl_post(url, routes, f"/v2/models/{model}/infer", example_infer_body(), signing_example)


def curl_post(
    url: str,
    routes: Sequence[TemplateRoute],
    path: str,
    body: Mapping[str, Any],
    signing_example: SigningExample | None,
    *,
    streamed: bool = False,
) -> str:
    """A JSON POST to `path` as curl, signed or with a bearer token when the route requires one;
    `streamed` keeps curl from buffering what it prints."""
    url = url.replace("://0.0.0.0:", "://127.0.0.1:")
    match = TemplateRoutes(routes).match("POST", path)
    authorization = match.route.authorization.type if match is not None else "NONE"
    curl = "curl -sN" if streamed else "curl -s"
    command = f"{curl} -X POST {url}{path}"
    if authorization == "AWS_IAM":
        if signing_example is None:
            command = f"# sign it with SigV4 (service execute-api), as above\n{command}"
        else:
            command = signing_example(path).replace("curl -s ", f"{curl} -X POST ", 1)
    elif authorization == "JWT":
        command += ' \\\n  -H "Authorization: Bearer $TOKEN"'
    text = json.dumps(body, separators=(",", ":"))
    return f"{command} \\\n  -H 'Content-Type: application/json' \\\n  -d {shlex.quote(text)}"


def llm_banner(
    *,
    url: str,
    routes: Sequence[TemplateRoute],
    reference: str,
    state: LlmState,
    detail: str = "",
    signing_example: SigningExample | None = None,
) -> str:
    """What `make serve` says about its LLM: being published in the background (`detail`: how to skip it),
    ready (`detail`: which version and how long it took, followed by a chat to paste), failed (`detail`:
    why), or off."""
    name = reference.split("@", 1)[0]
    if state == "publishing":
        return (
            f"LLM: publishing {reference} in the background (the first run on this machine builds it: "
            "import, export, parity and perplexity checks take minutes; later runs reuse that build); the "
            f"API answers meanwhile and a line here says when it is ready. {detail}"
        )
    if state == "failed":
        return (
            f"LLM: publishing {name} failed, the rest serves on: {detail}\n"
            f"  retry: restart make serve, or `maas train {name}` and `maas models alias {name} production N`"
        )
    if state == "off":
        return f"LLM: not published ({detail}); `maas train {name}` publishes it"
    chat = {
        "model": reference,
        "messages": [{"role": "user", "content": LLM_EXAMPLE_QUESTION}],
        "stream": True,
    }
    local = url.replace("://0.0.0.0:", "://127.0.0.1:")
    return "\n".join(
        [
            f"LLM ready: {reference} ({detail}); chat with it, streamed token by token:",
            curl_post(url, routes, "/openai/v1/chat/completions", chat, signing_example, streamed=True),
            f'  or the openai SDK: OpenAI(base_url="{local}/openai/v1", api_key="unused")',
        ]
    )


def stack_banner(
    *,
    url: str,
    template: SamTemplate,
    parameters: Mapping[str, str],
    store: StoreChoice,
    prefix: str,
    model: str,
    pollers: Sequence[SqsPoller],
    queue_urls: Mapping[str, str],
    signing_example: SigningExample | None,
    kept_in: Path | None = None,
    state_machines: Sequence[str] = (),
    shard_workers: int | None = None,
) -> str:
    """The banner of a stack serving `url`; `model` is the one the examples call; `kept_in` is the data
    folder an embedded store is saved into; `state_machines` the names of those it runs, with a Map at
    most `shard_workers` items at a time."""
    where = {
        "embedded": f"embedded S3 (moto) at {store.endpoint_url}, bucket {store.bucket}",
        "endpoint": f"S3 endpoint {store.endpoint_url}, bucket {store.bucket}",
        "aws": f"AWS S3 bucket {store.bucket}",
    }[store.kind]
    lines = [f"maas is serving {url} ({len(template.routes)} routes from {TEMPLATE_FILE})"]
    lines.append(f"console: {url.replace('://0.0.0.0:', '://127.0.0.1:')}/console/ (browse models, try them)")
    lines.append(f"models: {where}")
    if store.kind == "embedded" and kept_in is not None:
        lines.append(f"kept in {kept_in} across restarts (start afresh: maas serve --reset)")
    if store.kind == "embedded" and kept_in is not None:
        # The CLI reads the descriptor in the data folder: no variable to export for `maas` itself.
        lines.append(
            f"from another shell, `maas ...` finds this stack through {kept_in}/stack.json "
            "(`source .venv/bin/activate` first, or run .venv/bin/maas)"
        )
    if store.kind == "embedded":
        lines.append(
            "other S3 tools: "
            f"export AWS_ENDPOINT_URL={store.endpoint_url} AWS_ACCESS_KEY_ID=testing "
            f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={EMBEDDED_REGION} "
            f"{ENV_BUCKET}={store.bucket}"
        )
    lines += _auth_lines(template.routes, parameters, model, signing_example)
    streamed = [route for route in template.routes if route.streaming]
    if streamed:
        lines.append(
            f"streamed token by token (as {streamed[0].api_id} streams them): {_route_summary(streamed)}"
        )
    lines += ["try:", curl_example(url, template.routes, model, signing_example)]
    lines += _event_lines(template, store, prefix=prefix, model=model, pollers=pollers, queue_urls=queue_urls)
    if state_machines:
        cap = (
            f", Map items {shard_workers} at a time at most (MAAS_LOCAL_SHARD_WORKERS)"
            if shard_workers
            else ""
        )
        lines.append(f"state machines: {', '.join(state_machines)} run here, from {TEMPLATE_FILE}{cap}")
    lines.append("Ctrl-C stops.")
    return "\n".join(lines)


def _auth_lines(
    routes: Sequence[TemplateRoute],
    parameters: Mapping[str, str],
    model: str,
    signing_example: SigningExample | None,
) -> list[str]:
    """Which routes need what, and how to call the protected ones."""
    by_authorization: dict[str, list[TemplateRoute]] = {}
    for route in routes:
        by_authorization.setdefault(route.authorization.describe(), []).append(route)
    overrides = " ".join(f"{name}={value}" for name, value in parameters.items())
    lines = [f"auth, as {TEMPLATE_FILE} declares it" + (f" with {overrides}:" if overrides else ":")]
    lines += [f"  {kind}: {_route_summary(routes)}" for kind, routes in by_authorization.items()]
    iam_routes = [r for r in routes if r.authorization.type == "AWS_IAM"]
    if iam_routes and signing_example is not None:
        lines.append("  sign calls to AWS_IAM routes with SigV4 (service execute-api), e.g.:")
        lines.append(f"    {signing_example(_example_path(iam_routes, model))}")
    for route in routes:
        jwt = route.authorization.jwt
        if jwt is not None:
            audience = ", ".join(jwt.audience) or "none set: every token is refused"
            lines.append(
                f"  JWT routes take '{jwt.identity_sources[0]}: Bearer <token>' from "
                f"{jwt.issuer or 'an issuer with no local value'} (aud: {audience})"
            )
            break
    return lines


def _event_lines(
    template: SamTemplate,
    store: StoreChoice,
    *,
    prefix: str,
    model: str,
    pollers: Sequence[SqsPoller],
    queue_urls: Mapping[str, str],
) -> list[str]:
    if store.kind != "embedded":
        return [f"events: not emulated against {store.kind} storage (no queues, notifications or pollers)"]
    running = ", ".join(f"{p.queue.logical_id} -> {p.source.function_id}" for p in pollers)
    lines = [f"events: {running or 'no SQS events in the template'}"]
    # AWS CLI v1 ignores AWS_ENDPOINT_URL, so the commands name the endpoint themselves.
    aws = f"aws --endpoint-url {store.endpoint_url}"
    if template.queue_notifications:
        lines += [
            "start a batch job (one row per line; output.jsonl and status.json appear beside the input):",
            f"  maas jobs submit rows.jsonl --model {model}",
            f"  or: {aws} s3 cp rows.jsonl s3://{store.bucket}/{prefix}jobs/{model}/<job-id>/input.jsonl",
        ]
    if ASYNC_QUEUE_RESOURCE in queue_urls:
        request = {"model": model, "id": "r1", "inputs": example_infer_body(rows=1)["inputs"]}
        body = shlex.quote(json.dumps(request, separators=(",", ":")))
        lines += [
            f"send an async request (the answer appears at s3://{store.bucket}/{prefix}results/r1.json):",
            f"  {aws} sqs send-message --queue-url {queue_urls[ASYNC_QUEUE_RESOURCE]} --message-body {body}",
        ]
    return lines


def _route_summary(routes: Sequence[TemplateRoute]) -> str:
    """A few routes by name, more as a count under their common path."""
    if len(routes) <= 3:
        return ", ".join(route.route_key for route in routes)
    paths = [route.path for route in routes if route.path.startswith("/")]
    common = posixpath.commonpath(paths) if len(paths) == len(routes) else "/"
    prefix = common.split("/{", 1)[0]
    return f"{len(routes)} routes" + (f" under {prefix}" if prefix.strip("/") else "")


def _example_path(routes: Sequence[TemplateRoute], model: str) -> str:
    """A path that reaches one of `routes`: a GET without variables if there is one."""
    plain = [r for r in routes if r.method in ("GET", "ANY") and "{" not in r.path and r.path.startswith("/")]
    route = plain[0] if plain else routes[0]
    if not route.path.startswith("/"):
        return "/"
    return re.sub(r"\{([^}+]+)\+?\}", lambda m: model if m.group(1) == "name" else "1", route.path)
