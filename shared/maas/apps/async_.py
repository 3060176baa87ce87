"""The async function's composition root: requests from SQS answered into results/<id>.json, V2 requests by
the inference service and chat completions or completions by the completion service (built, and the
generation stack imported, only when the first of them arrives), behind the Lambda edge. (`async` is a
keyword, hence the underscore.)"""

from __future__ import annotations

from maas.apps.edge import BehindEdge
from maas.apps.snapstart import register_snapshot_hooks, warm_inference
from maas.aws_clients import s3_client
from maas.config import Settings, function_settings
from maas.events.queues import AsyncFunctionApp
from maas.service.generation_on_demand import EventCompletionsOnDemand
from maas.service.inference import InferenceService


def build_async_app(settings: Settings | None = None) -> BehindEdge[AsyncFunctionApp]:
    inference = InferenceService.from_settings(function_settings("InferMemorySize", settings))
    s3 = s3_client(inference.settings.endpoint_url)
    completions = EventCompletionsOnDemand(inference.registry, inference.settings, models=inference)
    register_snapshot_hooks(warm_inference(inference))
    return BehindEdge(
        AsyncFunctionApp(inference, s3, inference.settings.bucket, completions, inference.settings.prefix)
    )
