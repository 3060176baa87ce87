"""The batch function's composition root: job notifications from SQS (S3 events for jobs/.../input.*) run by
the batch-job service, behind the Lambda edge."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.apps.edge import Edge
from maas.aws_clients import s3_client
from maas.config import Settings
from maas.events.queues import BatchFunctionApp
from maas.service.batch_jobs import BatchJobService
from maas.service.inference import InferenceService


class BatchFunction(BatchFunctionApp):
    """The job-notification adapter, each invocation served through the Lambda edge."""

    def __init__(self, jobs: BatchJobService) -> None:
        super().__init__(jobs)
        self._edge = Edge(super().resolve)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        return self._edge.resolve(event, context)


def build_batch_app(settings: Settings | None = None) -> BatchFunction:
    inference = InferenceService.from_settings(settings)
    s3 = s3_client(inference.settings.endpoint_url)
    return BatchFunction(BatchJobService(inference, s3, inference.settings.bucket, inference.settings.prefix))
