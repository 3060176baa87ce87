"""Configuration in one typed place. Env var names are constants; explicit arguments win."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from maas.errors import ConfigurationError

ENV_BUCKET = "MAAS_BUCKET"
ENV_PREFIX = "MAAS_PREFIX"
ENV_PROVIDER = "MAAS_PROVIDER"
ENV_DEFAULT_ALIAS = "MAAS_DEFAULT_ALIAS"
ENV_ALIAS_TTL = "MAAS_ALIAS_TTL"
ENV_CACHE_BYTES = "MAAS_CACHE_BYTES"
ENV_WARMUP = "MAAS_WARMUP"
ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL"
ENV_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"

Provider = Literal["auto", "cpu", "cuda"]
PROVIDERS: tuple[Provider, ...] = ("auto", "cpu", "cuda")

DEFAULT_BUCKET = "maas-models"
DEFAULT_ALIAS = "production"
DEFAULT_ALIAS_TTL_SECONDS = 30.0
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class Settings:
    bucket: str = DEFAULT_BUCKET
    prefix: str = ""
    provider: Provider = "auto"
    default_alias: str = DEFAULT_ALIAS
    alias_ttl_seconds: float = DEFAULT_ALIAS_TTL_SECONDS
    cache_bytes: int = DEFAULT_CACHE_BYTES
    warmup: bool = True
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        provider = env.get(ENV_PROVIDER, "auto").strip().lower()
        if provider not in PROVIDERS:
            raise ConfigurationError(f"{ENV_PROVIDER}: expected one of {list(PROVIDERS)}, got {provider!r}")
        prefix = env.get(ENV_PREFIX, "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            bucket=env.get(ENV_BUCKET) or DEFAULT_BUCKET,
            prefix=prefix,
            provider=provider,
            default_alias=env.get(ENV_DEFAULT_ALIAS) or DEFAULT_ALIAS,
            alias_ttl_seconds=_number(env, ENV_ALIAS_TTL, DEFAULT_ALIAS_TTL_SECONDS),
            cache_bytes=int(_number(env, ENV_CACHE_BYTES, DEFAULT_CACHE_BYTES)),
            warmup=env.get(ENV_WARMUP, "1").strip().lower() not in ("0", "false", "no", "off"),
            endpoint_url=env.get(ENV_ENDPOINT_URL) or None,
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: expected a number, got {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name}: expected a non-negative number, got {raw!r}")
    return value
