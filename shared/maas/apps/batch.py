"""The batch function's composition root: job notifications from SQS (S3 events for jobs/.../input.*) run by
the batch-job service, and the jobs state machine's step payloads ({"maas_job_step": ...}) run by the
sharded-job steps, behind the Lambda edge. A text generator's jobs go to the completion service, which is
built (and the generation stack imported) only when the first of them arrives.

A job larger than the shard size starts the jobs state machine (MAAS_JOB_STATE_MACHINE_ARN) instead of
running here; the Step Functions client is made for the first such job."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

# First: Powertools' batch utility imports its pydantic parser models when pydantic is already imported, and
# the step payloads are pydantic models.
from maas.events.queues import BatchFunctionApp

# isort: split
from maas.apps.edge import Edge
from maas.apps.snapstart import register_snapshot_hooks, warm_inference
from maas.aws_clients import s3_client, stepfunctions_client
from maas.config import Settings, function_settings
from maas.events.job_steps import JobStepsApp, is_job_step
from maas.service.batch_jobs import BatchJobService
from maas.service.generation_on_demand import EventCompletionsOnDemand
from maas.service.inference import InferenceService
from maas.service.sharded_jobs import ShardedJobStarter, ShardedJobSteps


class BatchFunction(Edge):
    """Two kinds of event, each to its own adapter: an SQS batch of job notifications, or one job step."""

    def __init__(self, jobs: BatchFunctionApp, steps: JobStepsApp) -> None:
        self.jobs = jobs
        self.steps = steps

    def answer(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        if is_job_step(event):
            return self.steps.resolve(event, context)
        return self.jobs.resolve(event, context)


def build_batch_app(settings: Settings | None = None) -> BatchFunction:
    inference = InferenceService.from_settings(function_settings("BatchMemorySize", settings))
    settings = inference.settings
    s3 = s3_client(settings.endpoint_url)
    completions = EventCompletionsOnDemand(inference.registry, settings, models=inference)
    register_snapshot_hooks(warm_inference(inference))
    sharding = None
    if settings.job_state_machine_arn:
        stepfunctions = functools.partial(stepfunctions_client, settings.endpoint_url)
        sharding = ShardedJobStarter(s3, settings.bucket, settings, stepfunctions)
    jobs = BatchJobService(inference, s3, settings.bucket, completions, settings.prefix, sharding=sharding)
    return BatchFunction(BatchFunctionApp(jobs), JobStepsApp(ShardedJobSteps(jobs)))
