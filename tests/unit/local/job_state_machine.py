"""The job state machine of issue 22's design, as template.yaml declares it (JobStateMachine), for tests
that run it on small throwaway templates: `JOB_STATE_MACHINE` is the resource's YAML, indented to sit
under Resources, with the function it invokes named by the test."""

from __future__ import annotations

_RESOURCE = """\
  JobStateMachine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub maas-${Stage}-jobs
      Type: STANDARD
      DefinitionSubstitutions:
        BatchFunctionArn: !Ref FUNCTION_ID.Alias
      Definition:
        StartAt: PlanJob
        States:
          PlanJob:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: ${BatchFunctionArn}
              Payload: {maas_job_step: plan, job.$: $.job}
            ResultSelector: &work
              done.$: $.Payload.done
              failed.$: $.Payload.failed
              bucket.$: $.Payload.bucket
              items_key.$: $.Payload.items_key
              round.$: $.Payload.round
            ResultPath: $.work
            Retry: &transient
              - {ErrorEquals: [States.ALL], IntervalSeconds: 2, MaxAttempts: 3, BackoffRate: 2,
                 MaxDelaySeconds: 30, JitterStrategy: FULL}
            Catch: &fail_job
              - {ErrorEquals: [States.ALL], ResultPath: $.failure, Next: FailJob}
            Next: CheckWork
          CheckWork:
            Type: Choice
            Choices:
              - {Variable: $.work.failed, BooleanEquals: true, Next: JobFailed}
              - {Variable: $.work.done, BooleanEquals: true, Next: JobSucceeded}
            Default: RunShards
          RunShards:
            Type: Map
            ItemProcessor:
              ProcessorConfig: {Mode: DISTRIBUTED, ExecutionType: STANDARD}
              StartAt: RunShard
              States:
                RunShard:
                  Type: Task
                  Resource: arn:aws:states:::lambda:invoke
                  Parameters:
                    FunctionName: ${BatchFunctionArn}
                    Payload: {maas_job_step: shard, job.$: $.job, shard.$: $.shard}
                  ResultPath: null
                  OutputPath: $.shard.index
                  Retry:
                    - {ErrorEquals: [States.ALL], IntervalSeconds: 2, MaxAttempts: 3, BackoffRate: 2,
                       MaxDelaySeconds: 60, JitterStrategy: FULL}
                  Catch:
                    - {ErrorEquals: [States.ALL], ResultPath: $.failure, Next: RecordShardFailure}
                  End: true
                RecordShardFailure:
                  Type: Task
                  Resource: arn:aws:states:::lambda:invoke
                  Parameters:
                    FunctionName: ${BatchFunctionArn}
                    Payload:
                      {maas_job_step: shard_failed, job.$: $.job, shard.$: $.shard, failure.$: $.failure}
                  ResultPath: null
                  OutputPath: $.shard.index
                  Retry: *transient
                  End: true
            ItemReader:
              Resource: arn:aws:states:::s3:getObject
              ReaderConfig: {InputType: JSON}
              Parameters: {Bucket.$: $.work.bucket, Key.$: $.work.items_key}
            ItemSelector: {job.$: $.job, shard.$: $$.Map.Item.Value}
            MaxConcurrencyPath: $.concurrency
            ResultPath: null
            Catch: *fail_job
            Next: MergeShards
          MergeShards:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: ${BatchFunctionArn}
              Payload: {maas_job_step: merge, job.$: $.job, round.$: $.work.round}
            ResultSelector: *work
            ResultPath: $.work
            Retry: *transient
            Catch: *fail_job
            Next: CheckWork
          FailJob:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: ${BatchFunctionArn}
              Payload: {maas_job_step: fail, job.$: $.job, failure.$: $.failure}
            Retry: *transient
            ResultPath: null
            Next: JobFailed
          JobFailed:
            Type: Fail
            Error: JobFailed
            Cause: the job's status.json says why
          JobSucceeded:
            Type: Succeed
"""


def job_state_machine(function_id: str) -> str:
    """The JobStateMachine resource (YAML under Resources) whose steps invoke `function_id`'s alias."""
    return _RESOURCE.replace("FUNCTION_ID", function_id)
