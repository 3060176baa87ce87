"""Configuration in one typed place. Env var names are constants; explicit arguments win."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from maas.errors import ConfigurationError

ENV_BUCKET = "MAAS_BUCKET"
ENV_PREFIX = "MAAS_PREFIX"
ENV_PROVIDER = "MAAS_PROVIDER"
ENV_DEFAULT_ALIAS = "MAAS_DEFAULT_ALIAS"
ENV_ALIAS_TTL = "MAAS_ALIAS_TTL"
ENV_CACHE_BYTES = "MAAS_CACHE_BYTES"
ENV_WARMUP = "MAAS_WARMUP"
ENV_MAX_REQUEST_BYTES = "MAAS_MAX_REQUEST_BYTES"
ENV_MAX_RESPONSE_BYTES = "MAAS_MAX_RESPONSE_BYTES"
ENV_MAX_BATCH = "MAAS_MAX_BATCH"
ENV_MAX_ELEMENTS = "MAAS_MAX_ELEMENTS"
ENV_INTRA_OP_THREADS = "MAAS_INTRA_OP_THREADS"
ENV_INTRA_OP_SPINNING = "MAAS_INTRA_OP_SPINNING"
ENV_GRAPH_OPTIMIZATION = "MAAS_GRAPH_OPTIMIZATION"
ENV_DOCS = "MAAS_DOCS"
ENV_WARM_MODELS = "MAAS_WARM_MODELS"
ENV_JOB_BATCH_ROWS = "MAAS_JOB_BATCH_ROWS"
ENV_MAX_JSON_DEPTH = "MAAS_MAX_JSON_DEPTH"
ENV_MAX_STRING_BYTES = "MAAS_MAX_STRING_BYTES"
ENV_COMPRESSED_BODIES = "MAAS_COMPRESSED_BODIES"
ENV_REQUEST_TIMEOUT = "MAAS_REQUEST_TIMEOUT"
ENV_MANIFEST_SIGNING = "MAAS_MANIFEST_SIGNING"
ENV_EXPLAIN_MAX_EVALS = "MAAS_EXPLAIN_MAX_EVALS"
ENV_EXPLAIN_BATCH_ROWS = "MAAS_EXPLAIN_BATCH_ROWS"
ENV_MAX_CHOICES = "MAAS_MAX_CHOICES"
ENV_GENERATION_TIMEOUT = "MAAS_GENERATION_TIMEOUT"
ENV_JOB_SHARD_BYTES = "MAAS_JOB_SHARD_BYTES"
ENV_TEXT_JOB_SHARD_BYTES = "MAAS_TEXT_JOB_SHARD_BYTES"
ENV_PROMPT_JOB_SHARD_BYTES = "MAAS_PROMPT_JOB_SHARD_BYTES"
ENV_JOB_SHARD_CONCURRENCY = "MAAS_JOB_SHARD_CONCURRENCY"
ENV_JOB_STATE_MACHINE_ARN = "MAAS_JOB_STATE_MACHINE_ARN"
ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL"
ENV_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_LAMBDA_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
ENV_EPHEMERAL_STORAGE_MB = "MAAS_EPHEMERAL_STORAGE_MB"
ENV_MAPPED_WEIGHTS_BYTES = "MAAS_MAPPED_WEIGHTS_BYTES"

Provider = Literal["auto", "cpu", "cuda"]
PROVIDERS: tuple[Provider, ...] = ("auto", "cpu", "cuda")
GraphOptimization = Literal["disable", "basic", "extended", "all"]
GRAPH_OPTIMIZATIONS: tuple[GraphOptimization, ...] = ("disable", "basic", "extended", "all")
T = TypeVar("T", bound=str)

DEFAULT_BUCKET = "maas-models"
DEFAULT_ALIAS = "production"
DEFAULT_ALIAS_TTL_SECONDS = 30.0
# Off Lambda there is no memory setting to derive the model cache budget from.
DEFAULT_CACHE_BYTES = 1 << 30
# Share of a Lambda's memory the model cache may fill (artifact bytes; sessions need room beyond them).
LAMBDA_CACHE_SHARE = 0.4
# Lambda's synchronous invocation payload limit, for requests and responses alike.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_BATCH = 4096
DEFAULT_MAX_ELEMENTS = 1 << 24
# Rows a batch job runs per session.run: large enough to amortise the call, small enough that a
# text model (which tokenizes every row) stays within a 2 GB function.
DEFAULT_JOB_BATCH_ROWS = 512
# Nesting of a request's JSON: a [batch, c, h, w] tensor is 4 deep inside 3 levels of envelope; 32 leaves
# room for any model we serve while refusing the deeply nested documents that exist only to cost CPU.
DEFAULT_MAX_JSON_DEPTH = 32
# One element of a BYTES tensor: a text model truncates to its max_length tokens anyway, and tokenizing
# megabytes per element is work a client should not be able to ask for.
DEFAULT_MAX_STRING_BYTES = 256 * 1024
# Seconds one request may spend in the model: below API Gateway's 30 s integration timeout, so the client
# hears a clear 504 from us rather than a bare one from the gateway.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 25.0
# Model rows one explanation may evaluate: Shapley sampling with 200 permutations over the 64 pixels of a
# digits image is 12,800; this allows a handful of such images per request within the time budget.
DEFAULT_EXPLAIN_MAX_EVALS = 100_000
# Perturbed rows per session.run: few large runs instead of one per perturbation, each small enough that a
# CNN's activations stay well inside a Lambda function's memory.
DEFAULT_EXPLAIN_BATCH_ROWS = 1024
# Tokens (texts x their padded length) a text model's session.run takes at once, for inference and
# explanations alike. A transformer's activations grow with them (attention with length squared), so a
# request of 4,096 long texts runs a few at a time: 8 texts of MiniLM's 256 tokens (about 100 MB of
# activations, measured), 64 of text-bert's 32. A batch of typical short texts is still one run.
TEXT_RUN_TOKENS = 2048
# Choices (n, times the prompts of a completions request) one text-generation request may ask for: they are
# generated one after the other, so each multiplies the request's time.
DEFAULT_MAX_CHOICES = 4
# Seconds one text generation may decode before it ends with finish_reason "length": below API Gateway's
# 30 s integration timeout, so a whole answer still arrives, cut short and saying so.
DEFAULT_GENERATION_TIMEOUT_SECONDS = 25.0
# A batch job's input larger than this runs in shards of about this size (when a state machine is
# configured): 64 MiB of MLP rows take about 10 s in one function, so a shard is well inside its timeout and
# a 1 GB file is 16 shards at once.
DEFAULT_JOB_SHARD_BYTES = 64 * 1024 * 1024
# A text model's job (a tokenizer before the graph: classifiers, embeddings): MiniLM answers about 110 texts a
# second on two cores (make bench), so 2 MiB of ~115-byte texts (18,000) take about three minutes there and
# well under the 15-minute timeout on one vCPU; 64 MiB of texts would take hours.
DEFAULT_TEXT_JOB_SHARD_BYTES = 2 * 1024 * 1024
# A text generator's job: a prompt line takes about a second, so a shard is a few hundred prompts at most.
DEFAULT_PROMPT_JOB_SHARD_BYTES = 64 * 1024
# Shards of one job run at most this many at once (the Distributed Map's MaxConcurrency).
DEFAULT_JOB_SHARD_CONCURRENCY = 100

# Graph files (the graph and its external data) from which a session on the CPU keeps its weights
# memory-mapped instead of prepacked: prepacking 3 GB took 3.6-4.4 s of session creation, mapping 0.01 s,
# and halved batch-32 time only below it (decision 0022).
DEFAULT_MAPPED_WEIGHTS_BYTES = 1 << 30
# The template parameters that set a function's memory, named by a refusal for want of it; an app narrows it
# to its own function's.
DEFAULT_MEMORY_PARAMETER = "InferMemorySize, BatchMemorySize or GenerateMemorySize"
# Lambda's largest memory and ephemeral storage, both in MB: what a refusal says the parameters go up to.
LAMBDA_MAX_MEMORY_MB = 10240
# Lambda gives CPU in proportion to memory: 1,769 MB buys one vCPU's worth, 10,240 MB (its most) six.
# Threads beyond the share only queue for it (decision 0026).
LAMBDA_MB_PER_VCPU = 1769
LAMBDA_MAX_VCPUS = 6
LAMBDA_MAX_EPHEMERAL_STORAGE_MB = 10240

# What each variable does, one line each: docs/configuration.md is generated from these and the defaults
# above (docs/hooks/generate.py), and the docs build fails for a variable that has no line here.
ENV_DESCRIPTIONS: Mapping[str, str] = {
    ENV_BUCKET: "the registry bucket",
    ENV_PREFIX: "key prefix inside the bucket, for several registries in one bucket",
    ENV_PROVIDER: "`auto` (CUDA when onnxruntime offers it), `cpu`, or `cuda` (an error, not a fallback, "
    "when CUDA is absent)",
    ENV_DEFAULT_ALIAS: "the alias a bare model name resolves to",
    ENV_ALIAS_TTL: "seconds before a warm function re-resolves an alias or re-checks a pinned version",
    ENV_CACHE_BYTES: "model cache budget in artifact bytes; least recently used versions are evicted past "
    f"it. On Lambda the default is {LAMBDA_CACHE_SHARE:.0%} of `{ENV_LAMBDA_MEMORY_MB}`",
    ENV_WARMUP: "run one zero-filled inference when a model loads, so the first request doesn't pay for it",
    ENV_MAX_REQUEST_BYTES: "largest request body (after base64 decoding and inflating); Lambda's "
    "synchronous limit",
    ENV_MAX_RESPONSE_BYTES: "largest response body; binary responses count their base64 size",
    ENV_MAX_BATCH: "largest first dimension of any input",
    ENV_MAX_ELEMENTS: "largest element count of any input",
    ENV_INTRA_OP_THREADS: "onnxruntime intra-op threads. Unset: on Lambda, the whole vCPUs the function's "
    f"memory buys, to the nearest ({LAMBDA_MB_PER_VCPU} MB each, at most {LAMBDA_MAX_VCPUS}: 2048 MB runs "
    "one thread, 3538 two, 10240 six); elsewhere one per CPU this process may run on",
    ENV_INTRA_OP_SPINNING: "`1` lets onnxruntime's idle intra-op threads spin for work instead of sleeping; "
    "off by default, since spinning threads burn the CPU share the working ones need (decision 0026)",
    ENV_GRAPH_OPTIMIZATION: "onnxruntime graph optimization: `disable`, `basic`, `extended` or `all`",
    ENV_DOCS: "`0` switches Swagger UI at `/docs` off (`/openapi.json` stays)",
    ENV_WARM_MODELS: "comma-separated model references the scheduled warm-up keeps loaded (template "
    "parameter `WarmModels`)",
    ENV_JOB_BATCH_ROWS: "rows a batch job runs per onnxruntime call (text models: at most 32)",
    ENV_MAX_JSON_DEPTH: "deepest JSON nesting of a request",
    ENV_MAX_STRING_BYTES: "largest element of a BYTES tensor, in UTF-8 bytes",
    ENV_COMPRESSED_BODIES: "`0` refuses gzip/deflate request bodies with 415",
    ENV_REQUEST_TIMEOUT: "seconds one inference may take before it is stopped with 504; `0` switches the "
    "budget off",
    ENV_MANIFEST_SIGNING: "`kms:<key>` or `secret:<name or ARN>`: publish signed manifests and refuse "
    "unsigned or changed ones",
    ENV_EXPLAIN_MAX_EVALS: "most model rows one explanation may run; more is a 400 saying by how much",
    ENV_EXPLAIN_BATCH_ROWS: "perturbed rows per onnxruntime run of an explanation (fewer for rows of over "
    "16,384 elements)",
    ENV_MAX_CHOICES: "most choices one text-generation request may ask for (`n`, times the prompts of a "
    "completions request); more is a 400",
    ENV_GENERATION_TIMEOUT: "seconds one text generation may decode before it stops with `finish_reason` "
    "`length` and `maas.time_budget_exhausted`; the function's own remaining time (less 1 s) caps it; `0` "
    "leaves only that cap",
    ENV_JOB_SHARD_BYTES: "a batch job's input larger than this runs in shards of about this size, one "
    "function each, through the jobs state machine (`MAAS_JOB_STATE_MACHINE_ARN`); smaller ones run in one "
    "invocation (template parameter `JobShardBytes`)",
    ENV_TEXT_JOB_SHARD_BYTES: "the same threshold and shard size for a text model's jobs (a tokenizer before "
    "the graph: classifiers, embeddings), whose rows take far longer a byte (template parameter "
    "`TextJobShardBytes`)",
    ENV_PROMPT_JOB_SHARD_BYTES: "the same threshold and shard size for a text generator's (prompt) jobs, "
    "whose lines take far longer each (template parameter `PromptJobShardBytes`)",
    ENV_JOB_SHARD_CONCURRENCY: "most shards of one job that run at once (template parameter "
    "`JobShardConcurrency`)",
    ENV_JOB_STATE_MACHINE_ARN: "the jobs state machine that runs large jobs in shards (the template sets "
    "it); unset: every job runs in one invocation",
    ENV_ENDPOINT_URL: "any S3-compatible endpoint (moto server, LocalStack, MinIO): the same code path as "
    "AWS",
    ENV_SERVICE_NAME: "the `service` field of the structured logs; `maas` when unset",
    ENV_LAMBDA_MEMORY_MB: "set by Lambda, not by you: the function's memory in MB, which sizes the "
    "default model cache and the memory a model load must fit (unset: the cgroup's limit, else the "
    "machine's); a load that does not fit is refused with 503 before any download",
    ENV_EPHEMERAL_STORAGE_MB: "the function's `/tmp` in MB (the template sets it from "
    "`EphemeralStorageSize`; `make serve` applies it too): a load whose graph files do not fit it, less what "
    "cached models still hold there, is refused with 507 before any download. Unset: the disk's free space "
    "alone",
    ENV_MAPPED_WEIGHTS_BYTES: "graphs whose files (graph and external data) add up to at least this keep "
    "their weights memory-mapped on the CPU (`session.disable_prepacking`) instead of prepacked; a "
    "manifest's `weight_loading` overrides it",
}


@dataclass(frozen=True, slots=True)
class Settings:
    bucket: str = DEFAULT_BUCKET
    prefix: str = ""
    provider: Provider = "auto"
    default_alias: str = DEFAULT_ALIAS
    alias_ttl_seconds: float = DEFAULT_ALIAS_TTL_SECONDS
    cache_bytes: int = DEFAULT_CACHE_BYTES
    warmup: bool = True
    max_request_bytes: int = LAMBDA_PAYLOAD_BYTES
    max_response_bytes: int = LAMBDA_PAYLOAD_BYTES
    max_batch: int = DEFAULT_MAX_BATCH
    max_elements: int = DEFAULT_MAX_ELEMENTS
    # None: one thread per CPU this process may run on. On Lambda, from_env sets the function's vCPUs.
    intra_op_threads: int | None = None
    # Off: idle intra-op threads sleep rather than spin (decision 0026).
    intra_op_spinning: bool = False
    graph_optimization: GraphOptimization = "all"
    docs_enabled: bool = True
    endpoint_url: str | None = None
    # Model references the warm-up schedule pre-loads.
    warm_models: tuple[str, ...] = ()
    job_batch_rows: int = DEFAULT_JOB_BATCH_ROWS
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    # Content-Encoding gzip/deflate request bodies, inflated within max_request_bytes; off: 415.
    compressed_bodies: bool = True
    # 0 turns the per-request budget off (a batch job has its own deadline).
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    # "" (off), "kms:<key id or ARN>" (an HMAC KMS key) or "secret:<name or ARN>" (Secrets Manager).
    manifest_signing: str = ""
    explain_max_evaluations: int = DEFAULT_EXPLAIN_MAX_EVALS
    explain_batch_rows: int = DEFAULT_EXPLAIN_BATCH_ROWS
    max_choices: int = DEFAULT_MAX_CHOICES
    # 0: only the function's remaining time bounds a generation.
    generation_timeout_seconds: float = DEFAULT_GENERATION_TIMEOUT_SECONDS
    # None: not on Lambda; a load's memory budget reads the cgroup's limit, else the machine's memory.
    function_memory_bytes: int | None = None
    # None: no ephemeral storage size given; a load's /tmp budget is the disk's free space alone.
    ephemeral_storage_bytes: int | None = None
    mapped_weights_bytes: int = DEFAULT_MAPPED_WEIGHTS_BYTES
    # Which template parameter a refusal for want of memory tells the operator to raise.
    memory_parameter: str = DEFAULT_MEMORY_PARAMETER
    job_shard_bytes: int = DEFAULT_JOB_SHARD_BYTES
    text_job_shard_bytes: int = DEFAULT_TEXT_JOB_SHARD_BYTES
    prompt_job_shard_bytes: int = DEFAULT_PROMPT_JOB_SHARD_BYTES
    job_shard_concurrency: int = DEFAULT_JOB_SHARD_CONCURRENCY
    # "": no state machine, every job runs in one invocation.
    job_state_machine_arn: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        provider = _choice(env, ENV_PROVIDER, PROVIDERS, "auto")
        graph_optimization = _choice(env, ENV_GRAPH_OPTIMIZATION, GRAPH_OPTIMIZATIONS, "all")
        prefix = env.get(ENV_PREFIX, "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        intra_op_threads = int(_number(env, ENV_INTRA_OP_THREADS, 0))
        function_memory_bytes = _megabytes(env, ENV_LAMBDA_MEMORY_MB)
        if not intra_op_threads and function_memory_bytes is not None:
            intra_op_threads = lambda_vcpus(function_memory_bytes)
        return cls(
            bucket=env.get(ENV_BUCKET) or DEFAULT_BUCKET,
            prefix=prefix,
            provider=provider,
            default_alias=env.get(ENV_DEFAULT_ALIAS) or DEFAULT_ALIAS,
            alias_ttl_seconds=_number(env, ENV_ALIAS_TTL, DEFAULT_ALIAS_TTL_SECONDS),
            cache_bytes=int(_number(env, ENV_CACHE_BYTES, _default_cache_bytes(env))),
            warmup=_flag(env, ENV_WARMUP, default=True),
            max_request_bytes=int(_number(env, ENV_MAX_REQUEST_BYTES, LAMBDA_PAYLOAD_BYTES)),
            max_response_bytes=int(_number(env, ENV_MAX_RESPONSE_BYTES, LAMBDA_PAYLOAD_BYTES)),
            max_batch=int(_number(env, ENV_MAX_BATCH, DEFAULT_MAX_BATCH)),
            max_elements=int(_number(env, ENV_MAX_ELEMENTS, DEFAULT_MAX_ELEMENTS)),
            intra_op_threads=intra_op_threads or None,
            intra_op_spinning=_flag(env, ENV_INTRA_OP_SPINNING, default=False),
            graph_optimization=graph_optimization,
            docs_enabled=_flag(env, ENV_DOCS, default=True),
            endpoint_url=env.get(ENV_ENDPOINT_URL) or None,
            warm_models=tuple(ref.strip() for ref in env.get(ENV_WARM_MODELS, "").split(",") if ref.strip()),
            job_batch_rows=max(1, int(_number(env, ENV_JOB_BATCH_ROWS, DEFAULT_JOB_BATCH_ROWS))),
            max_json_depth=max(1, int(_number(env, ENV_MAX_JSON_DEPTH, DEFAULT_MAX_JSON_DEPTH))),
            max_string_bytes=int(_number(env, ENV_MAX_STRING_BYTES, DEFAULT_MAX_STRING_BYTES)),
            compressed_bodies=_flag(env, ENV_COMPRESSED_BODIES, default=True),
            request_timeout_seconds=_number(env, ENV_REQUEST_TIMEOUT, DEFAULT_REQUEST_TIMEOUT_SECONDS),
            manifest_signing=env.get(ENV_MANIFEST_SIGNING, "").strip(),
            explain_max_evaluations=int(_number(env, ENV_EXPLAIN_MAX_EVALS, DEFAULT_EXPLAIN_MAX_EVALS)),
            explain_batch_rows=max(1, int(_number(env, ENV_EXPLAIN_BATCH_ROWS, DEFAULT_EXPLAIN_BATCH_ROWS))),
            max_choices=max(1, int(_number(env, ENV_MAX_CHOICES, DEFAULT_MAX_CHOICES))),
            generation_timeout_seconds=_number(
                env, ENV_GENERATION_TIMEOUT, DEFAULT_GENERATION_TIMEOUT_SECONDS
            ),
            function_memory_bytes=function_memory_bytes,
            ephemeral_storage_bytes=_megabytes(env, ENV_EPHEMERAL_STORAGE_MB),
            mapped_weights_bytes=int(_number(env, ENV_MAPPED_WEIGHTS_BYTES, DEFAULT_MAPPED_WEIGHTS_BYTES)),
            job_shard_bytes=max(1, int(_number(env, ENV_JOB_SHARD_BYTES, DEFAULT_JOB_SHARD_BYTES))),
            text_job_shard_bytes=max(
                1, int(_number(env, ENV_TEXT_JOB_SHARD_BYTES, DEFAULT_TEXT_JOB_SHARD_BYTES))
            ),
            prompt_job_shard_bytes=max(
                1, int(_number(env, ENV_PROMPT_JOB_SHARD_BYTES, DEFAULT_PROMPT_JOB_SHARD_BYTES))
            ),
            job_shard_concurrency=max(
                1, int(_number(env, ENV_JOB_SHARD_CONCURRENCY, DEFAULT_JOB_SHARD_CONCURRENCY))
            ),
            job_state_machine_arn=env.get(ENV_JOB_STATE_MACHINE_ARN, "").strip(),
        )


def function_settings(memory_parameter: str, settings: Settings | None = None) -> Settings:
    """The settings a function's composition root serves with: `settings` (else the environment's), naming
    the template parameter that sets this function's memory, which a refusal for want of memory cites."""
    return replace(settings or Settings.from_env(), memory_parameter=memory_parameter)


def lambda_vcpus(memory_bytes: int) -> int:
    """The whole vCPUs a Lambda function of `memory_bytes` gets, to the nearest: 2048 MB is 1.16 vCPUs, so
    one; 3008 MB (1.70) two; 10240 MB (5.79) six, as AWS documents it. Two threads on a share of 1.16 gain
    at most 16% on a parallel op, and when the share runs out mid-op both wait for the next period."""
    share = memory_bytes / (1024 * 1024) / LAMBDA_MB_PER_VCPU
    return max(1, min(LAMBDA_MAX_VCPUS, math.floor(share + 0.5)))


def _default_cache_bytes(env: Mapping[str, str]) -> float:
    memory_mb = _number(env, ENV_LAMBDA_MEMORY_MB, 0)
    return memory_mb * 1024 * 1024 * LAMBDA_CACHE_SHARE if memory_mb else DEFAULT_CACHE_BYTES


def _megabytes(env: Mapping[str, str], name: str) -> int | None:
    """A size given in MB, in bytes; None when unset or 0."""
    return int(_number(env, name, 0) * 1024 * 1024) or None


def _choice(env: Mapping[str, str], name: str, allowed: tuple[T, ...], default: T) -> T:
    raw = env.get(name, default).strip().lower()
    for option in allowed:
        if raw == option:
            return option
    raise ConfigurationError(f"{name}: expected one of {list(allowed)}, got {raw!r}")


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name}: expected a finite, non-negative number, got {raw!r}")
    return value
