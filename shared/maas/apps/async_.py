"""The async function's composition root: V2 requests from SQS answered into results/<id>.json by the
inference service, behind the Lambda edge. (`async` is a keyword, hence the underscore.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.edge import Edge
from maas.aws_clients import s3_client
from maas.config import Settings
from maas.events.queues import AsyncFunctionApp
from maas.service.inference import InferenceService

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class AsyncFunction(AsyncFunctionApp):
    """The async-request adapter, each invocation served through the Lambda edge."""

    def __init__(self, inference: InferenceService, s3: S3Client, bucket: str, prefix: str = "") -> None:
        super().__init__(inference, s3, bucket, prefix)
        self._edge = Edge(super().resolve)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        return self._edge.resolve(event, context)


def build_async_app(settings: Settings | None = None) -> AsyncFunction:
    inference = InferenceService.from_settings(settings)
    s3 = s3_client(inference.settings.endpoint_url)
    return AsyncFunction(inference, s3, inference.settings.bucket, inference.settings.prefix)
