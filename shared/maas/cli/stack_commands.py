"""`maas config` (where the CLI points, and why) and `maas use-stack` (remember a deployed stack's outputs,
or forget them to use the local stack again)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from maas.cli import common
from maas.cli.target import ENV_DEFAULT_REGION, ENV_REGION, FIELDS, SavedStack
from maas.config import ENV_BUCKET, ENV_ENDPOINT_URL

if TYPE_CHECKING:
    from maas.cli.common import Commands

# The template's outputs (template.yaml `Outputs:`) that `use-stack` reads.
BUCKET_OUTPUT = "ModelBucketName"
API_OUTPUT = "ApiUrl"


def add_stack_commands(commands: Commands, output: argparse.ArgumentParser) -> None:
    config = commands.add_parser(
        "config",
        parents=[output],
        help="print where maas commands store and read models: source, endpoint, bucket, region, API URL",
        description="The target comes from, in order: MAAS_BUCKET or AWS_ENDPOINT_URL in the environment; "
        "the deployed stack saved by `maas use-stack`; the local stack `make serve` runs.",
    )
    config.add_argument(
        "--get", choices=FIELDS, metavar="FIELD", help=f"print only this value ({', '.join(FIELDS)})"
    )
    config.set_defaults(command=config_command)

    use_stack = commands.add_parser(
        "use-stack",
        help="remember a deployed stack (its bucket, API URL and region, read from CloudFormation once) "
        "for every later maas command; --local forgets it",
    )
    which = use_stack.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "name", nargs="?", metavar="NAME", help="the CloudFormation stack name (`make deploy STACK=`)"
    )
    which.add_argument(
        "--local",
        action="store_true",
        help="forget the saved stack: use the local stack (`make serve`) again",
    )
    use_stack.add_argument(
        "--region", metavar="REGION", help="the stack's region (default: AWS_REGION, else the AWS config's)"
    )
    use_stack.set_defaults(command=use_stack_command)


def config_command(args: argparse.Namespace) -> int:
    from maas.cli.target import resolve_target
    from maas.errors import ConfigurationError

    fields = resolve_target(os.environ).fields()
    if args.get is not None:
        value = fields[args.get]
        if value is None:
            raise ConfigurationError(f"{args.get}: not known for {fields['source']}")
        print(value)
        return 0
    if args.json:
        return common.print_json(fields)
    print(common.table([(name, value or "-") for name, value in fields.items()]))
    return 0


def use_stack_command(args: argparse.Namespace) -> int:
    from maas.cli.target import forget_stack, save_stack
    from maas.errors import InvalidInput

    if args.local:
        if args.region is not None:
            raise InvalidInput("--region: expected only with NAME, got it with --local")
        forgotten = forget_stack(os.environ)
        what = f"forgot stack {forgotten.stack}" if forgotten else "no stack was saved"
        print(f"{what}: maas commands use the local stack (`make serve`) unless the environment names one")
        return 0
    region = args.region or _default_region()
    outputs = stack_outputs(args.name, region)
    bucket = outputs.get(BUCKET_OUTPUT)
    if not bucket:
        raise InvalidInput(
            f"stack {args.name} in {region}: expected a {BUCKET_OUTPUT} output (a maas stack deployed from "
            f"template.yaml), got outputs {sorted(outputs) or 'none'}"
        )
    saved = SavedStack(stack=args.name, region=region, bucket=bucket, api_url=outputs.get(API_OUTPUT))
    path = save_stack(os.environ, saved)
    print(
        f"using stack {saved.stack} in {region}: s3://{bucket}, API {saved.api_url or '-'} (saved in {path})"
    )
    shadowing = [name for name in (ENV_BUCKET, ENV_ENDPOINT_URL) if os.environ.get(name, "").strip()]
    if shadowing:
        print(
            f"note: {' and '.join(shadowing)} set in this shell take precedence; unset them to use the stack",
            file=sys.stderr,
        )
    return 0


def stack_outputs(name: str, region: str) -> dict[str, str]:
    """The outputs of stack `name` in `region`, by output key."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from maas.errors import NotFound, Unavailable

    where = f"stack {name} in {region}"
    try:
        cloudformation: Any = boto3.session.Session(region_name=region).client("cloudformation")
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if "does not exist" in str(error.get("Message", "")):
            raise NotFound(
                f"{where}: not found; deploy it with `make deploy STACK={name}`, or give its region with "
                "--region"
            ) from None
        raise Unavailable(
            f"{where}: CloudFormation refused ({error.get('Code')}: {error.get('Message')})"
        ) from None
    except BotoCoreError as exc:
        raise Unavailable(
            f"{where}: CloudFormation unreachable ({type(exc).__name__}); check your AWS credentials "
            "(aws configure, AWS_PROFILE)"
        ) from None
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def _default_region() -> str:
    import botocore.session

    from maas.errors import InvalidInput

    region = os.environ.get(ENV_REGION) or os.environ.get(ENV_DEFAULT_REGION)
    region = region or botocore.session.get_session().get_config_variable("region")
    if not region:
        raise InvalidInput(
            "--region: expected the stack's region, got none (no AWS_REGION, none in ~/.aws/config)"
        )
    return str(region)
