"""The async function's composition root: V2 requests from SQS answered into results/<id>.json by the
inference service, behind the Lambda edge. (`async` is a keyword, hence the underscore.)"""

from __future__ import annotations

from maas.apps.edge import BehindEdge
from maas.aws_clients import s3_client
from maas.config import Settings
from maas.events.queues import AsyncFunctionApp
from maas.service.inference import InferenceService


def build_async_app(settings: Settings | None = None) -> BehindEdge[AsyncFunctionApp]:
    inference = InferenceService.from_settings(settings)
    s3 = s3_client(inference.settings.endpoint_url)
    return BehindEdge(AsyncFunctionApp(inference, s3, inference.settings.bucket, inference.settings.prefix))
