"""The jobs state machine's steps, as the batch function receives them: `{"maas_job_step": ..., ...}`.

Each Task state of template.yaml's JobStateMachine invokes the batch function with one of these payloads
(validated here, before any work):

    {"maas_job_step": "plan", "job": JOB}                               -> WORK
    {"maas_job_step": "shard", "job": JOB, "shard": SHARD}              -> {"index", "start", "outcome"}
    {"maas_job_step": "shard_failed", "job": JOB, "shard": SHARD,
     "failure": {"Error": str, "Cause": str}}                           -> {"index", "start", "outcome"}
    {"maas_job_step": "merge", "job": JOB, "round": int}                -> WORK
    {"maas_job_step": "fail", "job": JOB, "failure": {...}, "step"?}    -> {"outcome": "failed"}

    JOB   = {"input_key": "jobs/<model-ref>/<job-id>/input.<format>", "model_version": int}
    SHARD = a ShardTask (maas.service.shard_layout), an item of shards/round-<n>.json
    WORK  = {"done": bool, "failed": bool, "bucket": str, "items_key": str | null, "round": int}

A payload that is none of these raises InvalidInput, naming the field and what was expected (never a
value), as does a step that fails for good; Unavailable (storage) and anything unexpected are raised too,
and Step Functions retries them.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from maas.errors import InvalidInput, MaasError
from maas.observability import logger
from maas.service.job_layout import JobLocation
from maas.service.shard_layout import ShardTask
from maas.service.sharded_jobs import JobWork, ShardedJobSteps, StepFailure

# The field that tells a step payload from an SQS event.
JOB_STEP_FIELD = "maas_job_step"
JOB_STEPS = ("plan", "shard", "shard_failed", "merge", "fail")
MAX_SHOWN_ERRORS = 5


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobReference(_Payload):
    """The job a step works on: its input key, and the version pinned when the job started."""

    input_key: str = Field(min_length=1)
    model_version: int = Field(ge=1)


class StepsFailure(_Payload):
    """A failure as a Catch passes it on (ResultPath $.failure)."""

    Error: str = ""
    Cause: str = ""

    def as_failure(self) -> StepFailure:
        return StepFailure(error=self.Error, cause=self.Cause)


class PlanStep(_Payload):
    maas_job_step: Literal["plan"]
    job: JobReference


class ShardStep(_Payload):
    maas_job_step: Literal["shard"]
    job: JobReference
    shard: ShardTask


class ShardFailedStep(_Payload):
    maas_job_step: Literal["shard_failed"]
    job: JobReference
    shard: ShardTask
    failure: StepsFailure


class MergeStep(_Payload):
    maas_job_step: Literal["merge"]
    job: JobReference
    round: int = Field(ge=0)


class FailStep(_Payload):
    maas_job_step: Literal["fail"]
    job: JobReference
    failure: StepsFailure
    # The state that failed, when the state machine names it; else the job's folder tells.
    step: str | None = Field(None, max_length=80)


JobStep = Annotated[
    PlanStep | ShardStep | ShardFailedStep | MergeStep | FailStep, Field(discriminator=JOB_STEP_FIELD)
]
_JOB_STEP: TypeAdapter[JobStep] = TypeAdapter(JobStep)


def is_job_step(event: Mapping[str, Any]) -> bool:
    return JOB_STEP_FIELD in event


def parse_job_step(event: Mapping[str, Any]) -> JobStep:
    """The step a payload asks for; InvalidInput names what is wrong with it (fields, never values)."""
    step = event.get(JOB_STEP_FIELD)
    if step not in JOB_STEPS:
        shown = repr(step) if isinstance(step, str) and len(step) <= 32 else f"a JSON {type(step).__name__}"
        raise InvalidInput(f"{JOB_STEP_FIELD}: expected one of {list(JOB_STEPS)}, got {shown}")
    try:
        return _JOB_STEP.validate_python(dict(event))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'payload'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        ]
        more = f" and {len(problems) - MAX_SHOWN_ERRORS} more" if len(problems) > MAX_SHOWN_ERRORS else ""
        raise InvalidInput(
            f"{JOB_STEP_FIELD} {step}: expected a valid payload, got "
            + "; ".join(problems[:MAX_SHOWN_ERRORS])
            + more
        ) from None


class JobStepFailed(MaasError, status=500):
    """A step raised something unexpected: Step Functions retries it, and sees only its type."""


class JobStepsApp:
    """Runs one step of a sharded job per invocation (maas.service.sharded_jobs)."""

    def __init__(self, steps: ShardedJobSteps) -> None:
        self.steps = steps

    def resolve(self, event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        step = parse_job_step(event)
        job = JobLocation.from_input_key(step.job.input_key, self.steps.prefix)
        logger.set_correlation_id(job.path)
        remaining_ms = context.get_remaining_time_in_millis if context is not None else None
        try:
            return self._run(step, job, remaining_ms)
        except MaasError:
            raise
        except Exception as exc:
            # The type and the frames only: an exception's text can quote the input. What Step Functions
            # hands on (and a failed status may quote) says no more.
            logger.error(
                "job step failed unexpectedly",
                extra={
                    "job": job.path,
                    "step": step.maas_job_step,
                    "error_type": type(exc).__name__,
                    "traceback": "".join(traceback.format_tb(exc.__traceback__)),
                },
            )
            raise JobStepFailed(
                f"job step {step.maas_job_step}: failed unexpectedly ({type(exc).__name__}); the batch "
                "function's logs have its traceback"
            ) from None

    def _run(self, step: JobStep, job: JobLocation, remaining_ms: Callable[[], int] | None) -> dict[str, Any]:
        version = step.job.model_version
        if isinstance(step, PlanStep):
            return self._work(self.steps.plan(job, version))
        if isinstance(step, ShardStep):
            outcome = self.steps.run_shard(job, version, step.shard, remaining_ms)
            return {"index": step.shard.index, "start": step.shard.start, "outcome": outcome}
        if isinstance(step, ShardFailedStep):
            self.steps.record_shard_failure(job, step.shard, step.failure.as_failure())
            return {"index": step.shard.index, "start": step.shard.start, "outcome": "failed"}
        if isinstance(step, MergeStep):
            return self._work(self.steps.merge(job, step.round))
        self.steps.fail(job, step.failure.as_failure(), step.step)
        return {"outcome": "failed"}

    def _work(self, work: JobWork) -> dict[str, Any]:
        return {
            "done": work.done,
            "failed": work.failed,
            "bucket": self.steps.bucket,
            "items_key": work.items_key,
            "round": work.round,
        }
