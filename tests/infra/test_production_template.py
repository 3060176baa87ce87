"""template.yaml as a production stack: authentication per route and mode, an encrypted, private,
TLS-only bucket whose working data expires, encrypted queues with alarmed dead letters, and every knob a
parameter. Checked on what SAM and CloudFormation would deploy, for each configuration that matters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.deployed import ACCOUNT, REGION, Deployment, deploy, translate

DATA_PLANE_GETS = {
    "/",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models",
    "/v1/models",
    "/openapi.json",
    "/docs",
}
# HTTP API sends HEAD to no GET route: each GET route has a HEAD twin, secured alike.
DATA_PLANE_ROUTES = {
    *((method, path) for method in ("get", "head") for path in DATA_PLANE_GETS),
    ("post", "/v2/models/{name}/infer"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
    ("post", "/v2/models/{name}/explain"),
    ("post", "/v2/models/{name}/versions/{version}/explain"),
    ("post", "/v2/repository/index"),
    ("x-amazon-apigateway-any-method", "/v1/models/{proxy+}"),
    ("x-amazon-apigateway-any-method", "$default"),
}
REGISTRY_GETS = {
    "/registry/models",
    "/registry/models/{name}",
    "/registry/models/{name}/versions/{version}",
    "/registry/models/{name}/versions/{version}/files/{file}",
    "/registry/models/{name}/diff",
    "/registry/models/{name}/gate",
}
SECURITY_BY_MODE: dict[str, list[dict[str, list[str]]]] = {
    "NONE": [],
    "JWT": [{"DataPlaneJwt": []}],
    "AWS_IAM": [{"AWS_IAM": []}],
}
ISSUER = "https://idp.example.com/realms/maas"
# The logical id suffix of the alias SAM makes for AutoPublishAlias live.
LIVE_ALIAS = "Aliaslive"


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()


def _body(deployment: Deployment) -> dict[str, Any]:
    body: dict[str, Any] = deployment.resources["MaasHttpApi"]["Properties"]["Body"]
    return body


def _operations(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, methods in body["paths"].items()
        for method, operation in methods.items()
    }


def _target(operation: dict[str, Any]) -> str:
    """The function a route invokes: `<Function.Arn>`, or `<FunctionAliaslive>` for its live alias."""
    uri: str = operation["x-amazon-apigateway-integration"]["uri"]
    invoked = uri.split("functions/<", 1)[1].split(">", 1)[0]
    return invoked.removesuffix(".Arn").removesuffix(LIVE_ALIAS)


def _invokes_the_live_alias(operation: dict[str, Any]) -> bool:
    return f"{LIVE_ALIAS}>/invocations" in operation["x-amazon-apigateway-integration"]["uri"]


@pytest.mark.parametrize("mode", SECURITY_BY_MODE)
def test_the_data_plane_uses_the_chosen_auth_and_the_registry_always_needs_iam(
    translated: dict[str, Any], mode: str
) -> None:
    overrides = {"DataPlaneAuth": mode, "JwtIssuer": ISSUER, "JwtAudience": "maas-api,maas-cli"}
    body = _body(deploy(translated, overrides))
    operations = _operations(body)
    infer_routes = {route for route, operation in operations.items() if _target(operation) == "InferFunction"}
    # The conditional security list and the function's events describe the same routes.
    assert infer_routes == DATA_PLANE_ROUTES
    # Through the published version, which SnapStart applies to.
    assert all(_invokes_the_live_alias(operations[route]) for route in infer_routes)
    for route in DATA_PLANE_ROUTES:
        assert operations[route]["security"] == SECURITY_BY_MODE[mode], route
    registry_routes = [
        route for route, operation in operations.items() if _target(operation) == "RegistryFunction"
    ]
    assert len(registry_routes) == 18
    assert {("head", path) for path in REGISTRY_GETS} <= set(registry_routes)
    for route in registry_routes:
        assert operations[route]["security"] == [{"AWS_IAM": []}], route
    # Whatever guards a GET guards its HEAD, in every mode.
    for (method, path), operation in operations.items():
        if method == "get":
            assert operations[("head", path)]["security"] == operation["security"], path
    schemes = body["components"]["securitySchemes"]
    if mode == "JWT":
        authorizer = schemes["DataPlaneJwt"]["x-amazon-apigateway-authorizer"]
        assert authorizer["type"] == "jwt"
        assert authorizer["jwtConfiguration"] == {"issuer": ISSUER, "audience": ["maas-api", "maas-cli"]}
    else:
        assert "DataPlaneJwt" not in schemes


def test_jwt_mode_cannot_be_deployed_without_an_issuer_and_an_audience(translated: dict[str, Any]) -> None:
    rule = translated["Rules"]["JwtNeedsIssuerAndAudience"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "DataPlaneAuth"}, "JWT"]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]} in asserted
    assert {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "JwtAudience"}]}, ""]}]} in asserted


def test_the_longest_stage_still_names_a_valid_bucket_in_every_region(translated: dict[str, Any]) -> None:
    stage = translated["Parameters"]["Stage"]
    longest_region = "ap-southeast-5"  # among the longest region names; GovCloud's are shorter
    name = f"maas-{'s' * stage['MaxLength']}-{ACCOUNT}-{longest_region}"
    assert len(name) <= 63, name


def test_cors_headers_only_for_the_origins_given(translated: dict[str, Any]) -> None:
    assert "x-amazon-apigateway-cors" not in _body(deploy(translated))
    origins = "https://app.example.com,https://admin.example.com"
    cors = _body(deploy(translated, {"CorsAllowOrigins": origins}))["x-amazon-apigateway-cors"]
    assert cors["allowOrigins"] == origins.split(",")
    assert "authorization" in cors["allowHeaders"]


def test_the_stage_throttles_and_logs_access_without_bodies(translated: dict[str, Any]) -> None:
    deployment = deploy(translated, {"ThrottlingRateLimit": "50", "ThrottlingBurstLimit": "80"})
    (stage,) = deployment.of_type("AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]
    assert settings["DefaultRouteSettings"] == {"ThrottlingBurstLimit": "80", "ThrottlingRateLimit": "50"}
    log_format = settings["AccessLogSettings"]["Format"]
    assert "$context.status" in log_format and "$context.identity.caller" in log_format
    assert "body" not in log_format.lower()


def test_the_bucket_is_encrypted_with_the_stack_key_private_versioned_and_tls_only(
    translated: dict[str, Any],
) -> None:
    deployment = deploy(translated)
    bucket = deployment.resources["ModelBucket"]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {
        "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "<ModelKey.Arn>"},
        "BucketKeyEnabled": True,
    }
    assert deployment.resources["ModelKey"]["Properties"]["EnableKeyRotation"] is True
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    statements = {
        s["Sid"]: s
        for s in deployment.resources["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in statements.values())
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    assert statements["DenyPutsNotEncryptedWithTheBucketKey"]["Condition"] == {
        "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}
    }
    assert statements["DenyKmsPutsWithoutTheKeyId"]["Condition"] == {
        "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
        "Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "true"},
    }
    assert statements["DenyPutsWithAnotherKmsKey"]["Condition"] == {
        "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "<ModelKey.Arn>"}
    }


def test_a_key_brought_along_replaces_the_created_one(translated: dict[str, Any]) -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    deployment = deploy(translated, {"KmsKeyArn": key})
    assert "ModelKey" not in deployment.resources
    (rule,) = deployment.resources["ModelBucket"]["Properties"]["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key


def test_an_existing_bucket_is_served_and_nothing_is_created_for_it(translated: dict[str, Any]) -> None:
    deployment = deploy(translated, {"ExistingBucketName": "corp-models"})
    assert not deployment.of_type("AWS::S3::Bucket")
    assert not deployment.of_type("AWS::KMS::Key")
    for function in deployment.of_type("AWS::Lambda::Function").values():
        assert function["Properties"]["Environment"]["Variables"]["MAAS_BUCKET"] == "corp-models"
    (statement, _deny) = deployment.resources["JobsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": "arn:aws:s3:::corp-models"}


def test_job_files_and_results_expire_and_unfinished_uploads_are_aborted(translated: dict[str, Any]) -> None:
    deployment = deploy(translated, {"JobRetentionDays": "14", "ResultRetentionDays": "3"})
    rules = {
        r["Id"]: r
        for r in deployment.resources["ModelBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["ExpireJobs"]["Prefix"] == "jobs/" and rules["ExpireJobs"]["ExpirationInDays"] == "14"
    assert (
        rules["ExpireResults"]["Prefix"] == "results/" and rules["ExpireResults"]["ExpirationInDays"] == "3"
    )
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
    # The registry itself never expires.
    assert not any(rule.get("Prefix", "").startswith("models") for rule in rules.values())


def test_queues_are_encrypted_tls_only_and_dead_letters_raise_an_alarm(translated: dict[str, Any]) -> None:
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:maas-alerts"
    deployment = deploy(translated, {"AlarmTopicArn": topic})
    queues = deployment.of_type("AWS::SQS::Queue")
    assert set(queues) == {"JobsQueue", "JobsDeadLetterQueue", "AsyncQueue", "AsyncDeadLetterQueue"}
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())
    denied: set[str] = set()
    for policy in deployment.of_type("AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny":
                assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                denied.update(r if isinstance(r, str) else "" for r in _as_list(statement["Resource"]))
    assert denied == {f"<{queue}.Arn>" for queue in queues}
    alarmed = {}
    for alarm in deployment.of_type("AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        (dimension,) = properties["Dimensions"]
        alarmed[dimension["Value"]] = properties
        assert properties["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert properties["Threshold"] == 0 and properties["ComparisonOperator"] == "GreaterThanThreshold"
        assert properties["AlarmActions"] == [topic]
    assert set(alarmed) == {"<JobsDeadLetterQueue.QueueName>", "<AsyncDeadLetterQueue.QueueName>"}
    without_topic = deploy(translated)
    assert all(
        "AlarmActions" not in a["Properties"]
        for a in without_topic.of_type("AWS::CloudWatch::Alarm").values()
    )


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
def test_functions_and_layer_follow_the_architecture_and_python_312(
    translated: dict[str, Any], architecture: str
) -> None:
    deployment = deploy(translated, {"Architecture": architecture})
    (layer,) = deployment.of_type("AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleArchitectures"] == [architecture]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    for function in deployment.of_type("AWS::Lambda::Function").values():
        properties = function["Properties"]
        assert properties["Architectures"] == [architecture]
        assert properties["Runtime"] == "python3.12"


def test_the_layer_is_built_by_its_makefile_for_python_312() -> None:
    from maas.local.cloudformation_yaml import parse_cloudformation_yaml
    from tests.infra.deployed import TEMPLATE

    layer = parse_cloudformation_yaml(TEMPLATE.read_text(encoding="utf-8"))["Resources"]["MaasLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": {"Ref": "Architecture"}}
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    # SAM runs `make build-<LogicalId>` with the Makefile of ContentUri (tests/infra/test_layer_build.py).
    makefile = TEMPLATE.parent / layer["Properties"]["ContentUri"] / "Makefile"
    assert "\nbuild-MaasLayer:" in makefile.read_text(encoding="utf-8")


def test_functions_never_trace_or_log_payloads_and_get_their_settings(translated: dict[str, Any]) -> None:
    deployment = deploy(
        translated, {"ExecutionProvider": "cuda", "DefaultAlias": "stable", "ManifestSigningKmsKeyArn": ""}
    )
    for function_id, function in deployment.of_type("AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false", function_id
        assert variables["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false", function_id
        assert variables["POWERTOOLS_LOGGER_LOG_EVENT"] == "false", function_id
        assert variables["MAAS_PROVIDER"] == "cuda"
        assert variables["MAAS_DEFAULT_ALIAS"] == "stable"
        assert variables["MAAS_MANIFEST_SIGNING"] == ""
        assert variables["MAAS_BUCKET"] == f"maas-dev-{ACCOUNT}-{REGION}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ManifestSigningKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mac"}, "kms:"),
        (
            {"ManifestSigningSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:maas-hmac"},
            "secret:",
        ),
    ],
)
def test_manifest_signing_is_switched_on_by_its_parameter(
    translated: dict[str, Any], overrides: dict[str, str], expected: str
) -> None:
    deployment = deploy(translated, overrides)
    (arn,) = overrides.values()
    for function in deployment.of_type("AWS::Lambda::Function").values():
        assert function["Properties"]["Environment"]["Variables"]["MAAS_MANIFEST_SIGNING"] == expected + arn


def test_memory_sizes_are_parameters(translated: dict[str, Any]) -> None:
    deployment = deploy(
        translated,
        {
            "InferMemorySize": "3008",
            "BatchMemorySize": "4096",
            "RegistryMemorySize": "256",
            "GenerateMemorySize": "5307",
        },
    )
    memory = {
        rid: f["Properties"]["MemorySize"] for rid, f in deployment.of_type("AWS::Lambda::Function").items()
    }
    assert memory == {
        "InferFunction": "3008",
        "AsyncFunction": "3008",
        "BatchFunction": "4096",
        "RegistryFunction": "256",
        "GenerateFunction": "5307",
    }


MODEL_LOADERS = {"InferFunction", "AsyncFunction", "BatchFunction", "GenerateFunction"}


@pytest.mark.parametrize(
    ("overrides", "megabytes"), [({}, "2048"), ({"EphemeralStorageSize": "10240"}, "10240")]
)
def test_every_function_that_loads_models_gets_the_tmp_size_and_is_told_it(
    translated: dict[str, Any], overrides: dict[str, str], megabytes: str
) -> None:
    functions = deploy(translated, overrides).of_type("AWS::Lambda::Function")

    storage = {rid: f["Properties"].get("EphemeralStorage") for rid, f in functions.items()}
    told = {
        rid: f["Properties"]["Environment"]["Variables"].get("MAAS_EPHEMERAL_STORAGE_MB")
        for rid, f in functions.items()
    }
    assert storage == {rid: {"Size": megabytes} if rid in MODEL_LOADERS else None for rid in functions}
    # The local stack runs every function in one process with one environment: one value for all.
    assert told == {rid: megabytes if rid in MODEL_LOADERS else None for rid in functions}


@pytest.mark.parametrize(
    "parameter", ["InferMemorySize", "BatchMemorySize", "GenerateMemorySize", "EphemeralStorageSize"]
)
def test_the_memory_and_storage_parameters_reach_lambda_s_limit_and_say_what_a_big_model_needs(
    translated: dict[str, Any], parameter: str
) -> None:
    declared = translated["Parameters"][parameter]

    assert declared["MaxValue"] == 10240
    assert "10240" in declared["Description"]
    assert "weight" in declared["Description"] or "files" in declared["Description"]


def test_the_outputs_name_the_api_the_bucket_the_key_and_the_queues(translated: dict[str, Any]) -> None:
    outputs = translated["Outputs"]
    assert {
        "ApiUrl",
        "ModelBucketName",
        "ModelKeyArn",
        "JobsQueueUrl",
        "JobsQueueArn",
        "JobsDeadLetterQueueUrl",
        "AsyncQueueUrl",
        "AsyncDeadLetterQueueUrl",
        "StreamingApiUrl",
    } <= set(outputs)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
