"""Survey an S3-compatible endpoint for what maas needs of its local store (issue 21): run the fidelity
probes of infra/store_probes.py, and check that data written before a restart of the server is there after.

    python -m infra.store_survey probe --endpoint http://127.0.0.1:4566 [--sqs-endpoint URL]
    python -m infra.store_survey persist-write --endpoint URL --state /tmp/x.json   # then restart the server
    python -m infra.store_survey persist-check --endpoint URL --state /tmp/x.json
    python -m infra.store_survey large --endpoint URL --pid SERVER_PID --mib 512

Exit status 0 when every probe or check passed, 1 otherwise. docs/architecture/store-survey.md has the
candidates' results and the commands that started each one."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from infra.store_large_objects import measure_large_object
from infra.store_notification_probe import probe_notification_to_sqs
from infra.store_probes import (
    PART_BYTES,
    RACE_ROUNDS,
    ProbeFailed,
    ProbeResult,
    Target,
    probe_if_match_stale,
    probe_if_none_match_twice,
    probe_list_pagination,
    probe_multipart_if_none_match,
    probe_part_copy_and_range,
    probe_race_if_match,
    probe_race_if_none_match,
    probe_sse_headers,
    status_of,
    upload_in_parts,
)

DEFAULT_BUCKET = "maas-store-survey"
PERSIST_BUCKET = "maas-store-survey-persist"
PERSIST_QUEUE = "maas-store-survey-persist"
# maas's own client settings (maas.aws_clients), so the probes send what maas sends (checksums included).
CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=32,
)
RACE_CONFIG = Config(
    retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60, max_pool_connections=64
)
# Emulators take these (s3rver wants its own: --access-key S3RVER --secret-key S3RVER); given explicitly,
# so no real credentials from the shell are ever sent to a candidate.
DUMMY_KEY = "testing"
_credentials = {"aws_access_key_id": DUMMY_KEY, "aws_secret_access_key": DUMMY_KEY}


PROBES: dict[str, Callable[[Target], str]] = {
    "if-none-match twice": probe_if_none_match_twice,
    "if-match stale": probe_if_match_stale,
    "race if-none-match": probe_race_if_none_match,
    "race if-match": probe_race_if_match,
    "multipart if-none-match": probe_multipart_if_none_match,
    "part copy + range": probe_part_copy_and_range,
    "sse headers": probe_sse_headers,
    "notification to sqs": probe_notification_to_sqs,
    "list v2 pagination": probe_list_pagination,
}


def run_probe(name: str, target: Target) -> ProbeResult:
    try:
        return ProbeResult(name, True, PROBES[name](target))
    except ProbeFailed as exc:
        return ProbeResult(name, False, str(exc))
    except (ClientError, BotoCoreError) as exc:
        return ProbeResult(name, False, f"{type(exc).__name__}: {exc}")


def client(service: str, endpoint: str, region: str, config: Config = CLIENT_CONFIG) -> Any:
    make: Any = boto3.client  # the service name is a runtime string, not one of boto3's literal overloads
    return make(service, endpoint_url=endpoint, region_name=region, config=config, **_credentials)


def optional_client(service: str, endpoint: str | None, region: str) -> Any | None:
    """A client for `service` when the endpoint answers it at all: s3rver, for one, has no SQS or KMS."""
    if endpoint is None:
        return None
    candidate = client(service, endpoint, region, Config(retries={"max_attempts": 1}, connect_timeout=5))
    try:
        candidate.list_queues() if service == "sqs" else candidate.list_keys()
    except (ClientError, BotoCoreError):
        return None
    return candidate


def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def make_target(arguments: argparse.Namespace, bucket: str) -> Target:
    s3 = client("s3", arguments.endpoint, arguments.region)
    ensure_bucket(s3, bucket)
    sqs_endpoint = arguments.sqs_endpoint or arguments.endpoint
    return Target(
        s3=s3,
        bucket=bucket,
        region=arguments.region,
        sqs=optional_client("sqs", sqs_endpoint, arguments.region),
        kms=optional_client("kms", arguments.endpoint, arguments.region),
        s3_raw=client("s3", arguments.endpoint, arguments.region, RACE_CONFIG),
        race_rounds=getattr(arguments, "rounds", RACE_ROUNDS),
    )


def print_results(results: Sequence[ProbeResult], json_path: Path | None) -> int:
    width = max(len(result.name) for result in results)
    for result in results:
        print(f"{result.name:<{width}}  {'PASS' if result.passed else 'FAIL'}  {result.detail}")
    if json_path is not None:
        json_path.write_text(json.dumps([dataclasses.asdict(result) for result in results], indent=2) + "\n")
    return 0 if all(result.passed for result in results) else 1


def command_probe(arguments: argparse.Namespace) -> int:
    target = make_target(arguments, arguments.bucket)
    names = arguments.only or list(PROBES)
    results = []
    for name in names:
        started = time.monotonic()
        result = run_probe(name, target)
        results.append(
            ProbeResult(result.name, result.passed, f"{result.detail} ({time.monotonic() - started:.1f} s)")
        )
    return print_results(results, arguments.json)


def command_persist_write(arguments: argparse.Namespace) -> int:
    """Write what a restart must keep, and remember in --state what to expect."""
    target = make_target(arguments, PERSIST_BUCKET)
    s3 = target.s3
    small = s3.put_object(
        Bucket=PERSIST_BUCKET,
        Key="small.json",
        Body=b'{"v": 1}',
        ContentType="application/json",
        Metadata={"maas-sha256": "abc"},
    )
    large = upload_in_parts(target, "large.bin", [b"x" * PART_BYTES, b"y" * 1024])
    state: dict[str, Any] = {
        "objects": {"small.json": small["ETag"], "large.bin": large["ETag"]},
        "sizes": {"small.json": 8, "large.bin": PART_BYTES + 1024},
        "queue": None,
    }
    if target.sqs is not None:
        queue_url = target.sqs.create_queue(QueueName=PERSIST_QUEUE)["QueueUrl"]
        # A body of this run only: a message left from an earlier run must not pass for this one.
        state["message"] = f"kept across a restart {uuid.uuid4()}"
        target.sqs.send_message(QueueUrl=queue_url, MessageBody=state["message"])
        state["queue"] = PERSIST_QUEUE
        arn = target.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        s3.put_bucket_notification_configuration(
            Bucket=PERSIST_BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn["Attributes"]["QueueArn"], "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        )
    arguments.state.write_text(json.dumps(state, indent=2) + "\n")
    print(f"wrote {len(state['objects'])} objects{' and 1 message' if state['queue'] else ''}; now restart")
    return 0


def persisted_object_results(s3: Any, state: dict[str, Any]) -> list[ProbeResult]:
    results = []
    for key, etag in state["objects"].items():
        try:
            head = s3.head_object(Bucket=PERSIST_BUCKET, Key=key)
            body = s3.get_object(Bucket=PERSIST_BUCKET, Key=key)["Body"].read()
        except ClientError as exc:
            results.append(ProbeResult(f"kept {key}", False, f"{status_of(exc)}: {exc}"))
            continue
        same = head["ETag"] == etag and len(body) == state["sizes"][key]
        detail = f"ETag {head['ETag']} (was {etag}), {len(body)} bytes"
        if key == "small.json":
            same = same and head.get("Metadata") == {"maas-sha256": "abc"}
            detail += f", metadata {head.get('Metadata')}, {head.get('ContentType')}"
        results.append(ProbeResult(f"kept {key}", same, detail))
    return results


def kept_notification_result(s3: Any) -> ProbeResult:
    try:
        configuration = s3.get_bucket_notification_configuration(Bucket=PERSIST_BUCKET)
    except ClientError as exc:
        return ProbeResult("kept notification config", False, f"{status_of(exc)}: {exc}")
    queues = configuration.get("QueueConfigurations", [])
    return ProbeResult("kept notification config", len(queues) == 1, f"{len(queues)} queue configurations")


def command_persist_check(arguments: argparse.Namespace) -> int:
    state = json.loads(arguments.state.read_text())
    s3 = client("s3", arguments.endpoint, arguments.region)
    results = persisted_object_results(s3, state)
    try:
        s3.put_object(Bucket=PERSIST_BUCKET, Key="small.json", Body=b"again", IfNoneMatch="*")
        results.append(ProbeResult("If-None-Match after restart", False, "overwrote a kept object"))
    except ClientError as exc:
        results.append(ProbeResult("If-None-Match after restart", status_of(exc) == 412, str(status_of(exc))))
    if state["queue"]:
        results.append(kept_notification_result(s3))
        sqs = client("sqs", arguments.sqs_endpoint or arguments.endpoint, arguments.region)
        try:
            url = sqs.get_queue_url(QueueName=state["queue"])["QueueUrl"]
            answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, MaxNumberOfMessages=10)
            bodies = [message["Body"] for message in answer.get("Messages", [])]
            kept = state["message"] in bodies
            detail = f"{len(bodies)} received, this run's among them: {kept}"
            results.append(ProbeResult("kept SQS message", kept, detail))
        except ClientError as exc:
            results.append(ProbeResult("kept SQS message", False, f"queue: {exc}"))
    return print_results(results, arguments.json)


def command_large(arguments: argparse.Namespace) -> int:
    target = make_target(arguments, arguments.bucket)
    return print_results(measure_large_object(target, arguments.pid, arguments.mib), arguments.json)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m infra.store_survey", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("probe", "run the fidelity probes"),
        ("persist-write", "write what a restart must keep"),
        ("persist-check", "check it after the restart"),
        ("large", "the server's memory for one large object"),
    ):
        command = commands.add_parser(name, help=summary)
        command.add_argument("--endpoint", required=True, help="the S3 endpoint URL (127.0.0.1, path style)")
        command.add_argument("--sqs-endpoint", help="the SQS endpoint, when not the S3 one")
        command.add_argument("--region", default="us-east-1")
        command.add_argument("--access-key", default=DUMMY_KEY)
        command.add_argument("--secret-key", default=DUMMY_KEY)
        command.add_argument("--json", type=Path, help="also write the results here as JSON")
        if name in ("probe", "large"):
            command.add_argument("--bucket", default=DEFAULT_BUCKET)
        if name == "probe":
            command.add_argument("--only", action="append", choices=list(PROBES), help="run this probe only")
            command.add_argument("--rounds", type=int, default=RACE_ROUNDS, help="rounds of each race probe")
        elif name == "large":
            command.add_argument("--pid", type=int, required=True, help="the server's process id")
            command.add_argument("--mib", type=int, default=512, help="the object's size in MiB")
        else:
            command.add_argument("--state", type=Path, required=True, help="what persist-write wrote")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    _credentials.update(aws_access_key_id=arguments.access_key, aws_secret_access_key=arguments.secret_key)
    handlers = {"probe": command_probe, "persist-write": command_persist_write, "large": command_large}
    try:
        return handlers.get(arguments.command, command_persist_check)(arguments)
    except (ClientError, BotoCoreError) as exc:
        # A candidate that cannot even make the survey's bucket fails every probe; one line says why.
        print(f"{arguments.endpoint}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
