"""The batch function's composition root: job notifications from SQS (S3 events for jobs/.../input.*) run by
the batch-job service, behind the Lambda edge. A text generator's jobs go to the completion service, which
is built (and the generation stack imported) only when the first of them arrives."""

from __future__ import annotations

from maas.apps.edge import BehindEdge
from maas.apps.snapstart import register_snapshot_hooks, warm_inference
from maas.aws_clients import s3_client
from maas.config import Settings, function_settings
from maas.events.queues import BatchFunctionApp
from maas.service.batch_jobs import BatchJobService
from maas.service.generation_on_demand import EventCompletionsOnDemand
from maas.service.inference import InferenceService


def build_batch_app(settings: Settings | None = None) -> BehindEdge[BatchFunctionApp]:
    inference = InferenceService.from_settings(function_settings("BatchMemorySize", settings))
    s3 = s3_client(inference.settings.endpoint_url)
    completions = EventCompletionsOnDemand(inference.registry, inference.settings, models=inference)
    register_snapshot_hooks(warm_inference(inference))
    jobs = BatchJobService(inference, s3, inference.settings.bucket, completions, inference.settings.prefix)
    return BehindEdge(BatchFunctionApp(jobs))
