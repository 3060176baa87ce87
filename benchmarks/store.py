"""The benchmarks' model store: a moto server holding seed-mlp (BenchStore), and each recipe trained once
per run at its default config and published into it on demand (ModelZoo)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.support.functions import FUNCTION_ENV

from maas.registry import Manifest, ModelRegistry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from maas.training import TrainedModel

STORE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
STORE_REGION = "us-east-1"
SEED_OVERRIDES = {"epochs": 2}


@dataclass(frozen=True, slots=True)
class BenchStore:
    endpoint_url: str
    bucket: str
    s3: S3Client
    seed: Manifest

    def function_env(self, **settings: str) -> dict[str, str]:
        """What a function's process needs to reach this store, as the local stack would set it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": STORE_REGION,
            **FUNCTION_ENV,
            "MAAS_BUCKET": self.bucket,
            **STORE_CREDENTIALS,
            **settings,
        }


class ModelZoo:
    """Each recipe trained once per run at its default config (what `make demo` publishes), and its int8
    version, so every case measures the same models. Training happens on first use."""

    # The int8 numbers are measured whatever they lose; the publishing gate is not the benchmark's concern.
    INT8_MAX_DEGRADATION = 1.0

    def __init__(self) -> None:
        self._trained: dict[str, TrainedModel] = {}
        self._int8: dict[str, TrainedModel] = {}
        self._published: dict[tuple[str, str], Manifest] = {}

    def trained(self, recipe: str) -> TrainedModel:
        from maas.training import train_recipe

        if recipe not in self._trained:
            self._trained[recipe] = train_recipe(recipe)
        return self._trained[recipe]

    def int8(self, recipe: str) -> TrainedModel:
        from maas.training.quantize import quantize_trained

        if recipe not in self._int8:
            self._int8[recipe] = quantize_trained(
                self.trained(recipe), max_degradation=self.INT8_MAX_DEGRADATION
            )
        return self._int8[recipe]

    def published(
        self, store: BenchStore, recipe: str, *, name: str | None = None, int8: bool = False
    ) -> Manifest:
        """The recipe's model in the bench store, published once under `name`: by default `<recipe>-fp32` or
        `<recipe>-int8`, so it never becomes a new version of the store's own seed-mlp."""
        from maas.training import publish_trained

        model_name = name or f"{recipe}-{'int8' if int8 else 'fp32'}"
        key = (model_name, "int8" if int8 else "fp32")
        if key not in self._published:
            model = self.int8(recipe) if int8 else self.trained(recipe)
            self._published[key] = publish_trained(
                model, ModelRegistry(store.s3, store.bucket), name=model_name
            )
        return self._published[key]
