"""The container-image variant: its template, derived from template.yaml, deploys; both Dockerfiles ship the
handlers the template names, in a layout they import from, with onnxruntime in step and nothing offline.

No image is built here (no Docker): the Dockerfiles are read as text and their COPY steps replayed into a
folder that stands for the image's task root."""

from __future__ import annotations

import ast
import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from cfnlint.api import lint_file
from infra.container_template import (
    EXEC_WRAPPER,
    FUNCTION_TYPE,
    IMAGE_URI_PARAMETER,
    LAYER_TYPES,
    ZIP_ONLY_PROPERTIES,
    ContainerTemplateError,
    container_template,
    handler_file,
    image_exec_wrapper,
    image_functions,
    load_template,
    render,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from maas.local.cloudformation_yaml import parse_cloudformation_yaml
from tests.support.paths import ROOT

CONTAINERS = ROOT / "infra" / "containers"
CPU_DOCKERFILE = CONTAINERS / "Dockerfile"
CUDA_DOCKERFILE = CONTAINERS / "Dockerfile.cuda"
DOCKERFILES = [CPU_DOCKERFILE, CUDA_DOCKERFILE]
REQUIREMENTS = ROOT / "shared" / "requirements.txt"
# What public.ecr.aws/lambda/python sets before the Dockerfile's first line.
BASE_IMAGE_ENV = {"LAMBDA_TASK_ROOT": "/var/task"}
OFFLINE_SUBPACKAGES = ("training", "local", "cli")
HEALTH_LIVE_EVENT = ROOT / "tests" / "events" / "http_v2_health_live.json"


# ---- the image template


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def image_template(source: dict[str, Any]) -> dict[str, Any]:
    return container_template(source)


@pytest.fixture(scope="module")
def image_template_file(image_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("containers") / "template.yaml"
    path.write_text(render(image_template), encoding="utf-8")
    return path


def test_the_image_template_passes_cfn_lint(image_template_file: Path) -> None:
    matches = lint_file(image_template_file)
    for match in matches:
        print(f"cfn-lint {match.rule.id}: {match.message} (line {match.linenumber})")
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert errors == [], [f"{m.rule.id}: {m.message}" for m in errors]


def test_the_rendered_file_reads_back_as_the_image_template(
    image_template: dict[str, Any], image_template_file: Path
) -> None:
    assert parse_cloudformation_yaml(image_template_file.read_text(encoding="utf-8")) == image_template


def test_the_image_template_transforms_into_image_functions_without_layers(
    image_template: dict[str, Any],
) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # The translator edits the document it is given.
        translated = Translator(None, Parser()).translate(
            copy.deepcopy(image_template), parameter_values={}, get_managed_policy_map=dict
        )
    resources = translated["Resources"]
    functions = {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert set(functions) == set(image_functions(image_template))
    for logical_id, function in functions.items():
        assert function["PackageType"] == "Image", logical_id
        assert function["Code"] == {"ImageUri": {"Ref": IMAGE_URI_PARAMETER}}, logical_id
        assert function["ImageConfig"]["Command"] == [image_functions(image_template)[logical_id]]
        assert not {"Handler", "Runtime", "Layers"} & set(function), logical_id
    assert not [r for r in resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]


def test_only_how_functions_are_packaged_changes(
    source: dict[str, Any], image_template: dict[str, Any]
) -> None:
    """Parameters, conditions, IAM, storage, queues and the API are template.yaml's, unchanged."""
    layers = {lid for lid, r in source["Resources"].items() if r.get("Type") in LAYER_TYPES}
    assert set(image_template["Resources"]) == set(source["Resources"]) - layers
    for logical_id, resource in source["Resources"].items():
        if logical_id in layers:
            continue
        converted = image_template["Resources"][logical_id]
        if resource["Type"] != FUNCTION_TYPE:
            assert converted == resource, logical_id
            continue
        kept = {k: v for k, v in resource["Properties"].items() if k not in ZIP_ONLY_PROPERTIES}
        variables = kept.get("Environment", {}).get("Variables", {})
        if EXEC_WRAPPER in variables:  # it moves with the code, and only it
            kept = copy.deepcopy(kept)
            wrapper = image_exec_wrapper(variables[EXEC_WRAPPER], resource["Properties"]["CodeUri"])
            kept["Environment"]["Variables"][EXEC_WRAPPER] = wrapper
        added = {"PackageType", "ImageUri", "ImageConfig"}
        assert {k: v for k, v in converted["Properties"].items() if k not in added} == kept, logical_id
        assert {k: v for k, v in converted.items() if k != "Properties"} == {
            k: v for k, v in resource.items() if k != "Properties"
        }
    assert image_template["Parameters"] == {
        **source["Parameters"],
        IMAGE_URI_PARAMETER: image_template["Parameters"][IMAGE_URI_PARAMETER],
    }
    for section in set(source) - {"Resources", "Parameters", "Globals", "Outputs"}:
        assert image_template[section] == source[section], section
    globals_function = source.get("Globals", {}).get("Function", {})
    kept_globals = {k: v for k, v in globals_function.items() if k not in ZIP_ONLY_PROPERTIES}
    assert image_template.get("Globals", {}).get("Function", {}) == kept_globals
    outputs = source.get("Outputs", {})
    assert image_template.get("Outputs", {}) == {k: v for k, v in outputs.items() if not _names(v, layers)}


def test_every_handler_command_names_a_handler_the_image_holds(
    image_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    commands = image_functions(image_template)
    assert commands, "expected image functions"
    for dockerfile in DOCKERFILES:
        task_root = _replay_copies(dockerfile, tmp_path_factory.mktemp(dockerfile.name))
        for logical_id, command in commands.items():
            path = handler_file(command, task_root)
            assert path.is_file(), (dockerfile.name, logical_id, command)
            defined = {
                n.name
                for n in ast.parse(path.read_text(encoding="utf-8")).body
                if isinstance(n, ast.FunctionDef)
            }
            assert command.rpartition(".")[2] in defined, (dockerfile.name, logical_id, command)


def test_every_exec_wrapper_the_image_template_names_is_an_executable_the_image_holds(
    image_template: dict[str, Any], tmp_path: Path
) -> None:
    task_root = _replay_copies(CPU_DOCKERFILE, tmp_path)
    wrappers = [
        resource["Properties"]["Environment"]["Variables"][EXEC_WRAPPER]
        for resource in image_template["Resources"].values()
        if resource.get("Type") == FUNCTION_TYPE
        and EXEC_WRAPPER in resource["Properties"].get("Environment", {}).get("Variables", {})
    ]
    assert wrappers, "expected the generate function's exec wrapper"
    for wrapper in wrappers:
        path = task_root / PurePosixPath(wrapper).relative_to(BASE_IMAGE_ENV["LAMBDA_TASK_ROOT"])
        assert path.is_file(), wrapper
        assert path.stat().st_mode & 0o111, f"{wrapper} is not executable"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_default_command_is_one_of_the_template_handlers(
    dockerfile: Path, image_template: dict[str, Any]
) -> None:
    (cmd,) = [i.arguments for i in _instructions(dockerfile) if i.keyword == "CMD"]
    (command,) = json.loads(cmd)
    assert command in image_functions(image_template).values()


# ---- how template.yaml's shapes turn into image functions


def _minimal(function: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Deps": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "shared/"}},
            "Fn": {"Type": FUNCTION_TYPE, "Properties": function},
        },
        **sections,
    }


def test_globals_supply_code_and_handler_and_lose_the_zip_settings() -> None:
    source = _minimal(
        {"MemorySize": 256},
        Globals={
            "Function": {
                "CodeUri": "./functions/infer/",
                "Handler": "app.lambda_handler",
                "Runtime": "python3.12",
                "Layers": [{"Ref": "Deps"}],
                "Timeout": 30,
            }
        },
        Outputs={
            "LayerArn": {"Value": {"Ref": "Deps"}},
            "FunctionArn": {"Value": {"Fn::GetAtt": ["Fn", "Arn"]}},
        },
    )
    converted = container_template(source)
    assert converted["Resources"]["Fn"]["Properties"] == {
        "MemorySize": 256,
        "PackageType": "Image",
        "ImageUri": {"Ref": IMAGE_URI_PARAMETER},
        "ImageConfig": {"Command": ["functions.infer.app.lambda_handler"]},
    }
    assert converted["Globals"] == {"Function": {"Timeout": 30}}
    assert set(converted["Resources"]) == {"Fn"}
    assert set(converted["Outputs"]) == {"FunctionArn"}
    assert "Runtime" in source["Globals"]["Function"], "the source must be left as it was"


@pytest.mark.parametrize(
    ("wrapper", "expected"),
    [
        ("/var/task/streaming_bootstrap", "/var/task/functions/generate/streaming_bootstrap"),
        ("/var/task/bin/wrap", "/var/task/functions/generate/bin/wrap"),
        ("/opt/extension/wrapper", "/opt/extension/wrapper"),
    ],
)
def test_an_exec_wrapper_shipped_with_the_code_moves_with_it(wrapper: str, expected: str) -> None:
    function = {
        "CodeUri": "functions/generate/",
        "Handler": "app.lambda_handler",
        "Environment": {"Variables": {EXEC_WRAPPER: wrapper, "OTHER": "/var/task/kept"}},
    }
    converted = container_template(_minimal(function))["Resources"]["Fn"]["Properties"]
    assert converted["Environment"]["Variables"] == {EXEC_WRAPPER: expected, "OTHER": "/var/task/kept"}


@pytest.mark.parametrize(
    ("function", "extra", "expected"),
    [
        ({"InlineCode": "def h(e, c): pass", "Handler": "index.h"}, {}, "expected CodeUri to be a string"),
        ({"CodeUri": {"Bucket": "b", "Key": "k.zip"}, "Handler": "app.h"}, {}, "expected CodeUri"),
        ({"CodeUri": "functions/infer/", "Handler": "lambda_handler"}, {}, "expected '<module>.<function>'"),
        ({"CodeUri": "../elsewhere/", "Handler": "app.h"}, {}, "a folder inside the repository"),
        (
            {"CodeUri": "functions/infer/", "Handler": "app.h", "Layers": [{"Ref": "Deps"}]},
            {
                "Outputs": {"Both": {"Value": {"Fn::Sub": "${Deps} ${Fn.Arn}"}}},
                "Metadata": {"X": {"Ref": "Deps"}},
            },
            "used by functions only",
        ),
        (
            {"CodeUri": "functions/infer/", "Handler": "app.h"},
            {"Parameters": {IMAGE_URI_PARAMETER: {"Type": "String"}}},
            "is taken already",
        ),
    ],
)
def test_what_an_image_function_cannot_express_is_refused(
    function: dict[str, Any], extra: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ContainerTemplateError, match=re.escape(expected)):
        container_template(_minimal(function, **extra))


# ---- the Dockerfiles


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_is_in_the_build_context(dockerfile: Path) -> None:
    patterns = _ignore_patterns(dockerfile)
    copies = [i for i in _instructions(dockerfile) if i.keyword in {"COPY", "ADD"}]
    assert copies
    for instruction in copies:
        for source in _copy_arguments(instruction)[:-1]:
            path = ROOT / source
            assert path.exists(), source
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            sent = [p for p in files if not _ignored(p.relative_to(ROOT).as_posix(), patterns)]
            assert sent, (
                f"{dockerfile.name}: COPY {source} but its .dockerignore leaves it out of the context"
            )


def test_both_dockerignore_files_keep_the_same_context() -> None:
    assert _ignore_patterns(CPU_DOCKERFILE) == _ignore_patterns(CUDA_DOCKERFILE)


def test_both_images_run_one_onnxruntime_release_within_the_layer_requirements() -> None:
    cpu = _arg_defaults(CPU_DOCKERFILE)["ONNXRUNTIME_VERSION"]
    cuda = _arg_defaults(CUDA_DOCKERFILE)["ONNXRUNTIME_VERSION"]
    assert cpu == cuda
    specifier = _requirements()["onnxruntime"].specifier
    assert specifier.contains(Version(cuda)), (
        f"onnxruntime {cuda} is outside shared/requirements.txt's {specifier}"
    )
    pinned = [s.version for s in specifier if s.operator in {"==", "==="}]
    assert pinned in ([], [cuda])
    assert 'onnxruntime==${ONNXRUNTIME_VERSION}"' in _run_text(CPU_DOCKERFILE)
    assert 'onnxruntime-gpu==${ONNXRUNTIME_VERSION}"' in _run_text(CUDA_DOCKERFILE)


def test_the_cuda_image_drops_the_cpu_onnxruntime_from_the_requirements() -> None:
    """onnxruntime and onnxruntime-gpu both install the `onnxruntime` package; only the GPU one may."""
    match = re.search(r"grep -viE '([^']+)' /tmp/requirements\.txt", _run_text(CUDA_DOCKERFILE))
    assert match, "expected Dockerfile.cuda to filter onnxruntime out of shared/requirements.txt with grep"
    filtered = subprocess.run(
        ["grep", "-viE", match.group(1), str(REQUIREMENTS)], capture_output=True, text=True, check=True
    ).stdout
    assert set(_requirements(filtered)) == set(_requirements()) - {"onnxruntime"}


def test_the_cuda_image_runs_the_handlers_through_the_runtime_interface_client() -> None:
    instructions = _instructions(CUDA_DOCKERFILE)
    (entrypoint,) = [i.arguments for i in instructions if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python3", "-m", "awslambdaric"]
    assert _env(CUDA_DOCKERFILE)["MAAS_PROVIDER"] == "cuda"
    assert "awslambdaric==${AWSLAMBDARIC_VERSION}" in _run_text(CUDA_DOCKERFILE)
    (base,) = [i.arguments for i in instructions if i.keyword == "FROM"]
    tag = _arg_defaults(CUDA_DOCKERFILE)["CUDA_IMAGE_TAG"]
    assert base == "nvidia/cuda:${CUDA_IMAGE_TAG}"
    # onnxruntime-gpu 1.31 is built for CUDA 13 and cuDNN 9; a CUDA 12 base lacks libcudart.so.13.
    assert re.fullmatch(r"13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", tag), tag


def test_the_cpu_image_starts_from_a_pinned_lambda_python_3_12_base() -> None:
    (base,) = [i.arguments for i in _instructions(CPU_DOCKERFILE) if i.keyword == "FROM"]
    assert base == "public.ecr.aws/lambda/python:${LAMBDA_PYTHON_TAG}"
    assert re.fullmatch(r"3\.12\.\d{4}\.\d\d\.\d\d\.\d\d", _arg_defaults(CPU_DOCKERFILE)["LAMBDA_PYTHON_TAG"])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_image_installs_torch_or_the_training_extras(dockerfile: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    training = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["train"]}
    assert "torch" in training
    installed = set(_requirements())
    arguments_defaults = _arg_defaults(dockerfile)
    for command in _pip_installs(dockerfile):
        arguments = shlex.split(command)
        assert not any("[" in a or a in {".", "-e", "--editable"} for a in arguments), command
        names = _pip_install_names(arguments[arguments.index("install") + 1 :])
        installed |= {canonicalize_name(Requirement(_substitute(n, arguments_defaults)).name) for n in names}
    assert installed & training == set()
    assert "torch" not in _run_text(dockerfile)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_handlers_import_from_the_image_layout_without_touching_aws(
    dockerfile: Path, image_template: dict[str, Any], tmp_path: Path
) -> None:
    """A fresh interpreter whose only maas and functions are the image's copies imports every handler the
    way the Lambda runtime does (importlib on the dotted module path), then answers a health check. AWS
    points at a closed local port: an import that reached for S3 would fail."""
    task_root = _replay_copies(dockerfile, tmp_path / "task")
    assert not [s for s in OFFLINE_SUBPACKAGES if (task_root / "maas" / s).exists()]
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_EC2_METADATA_DISABLED": "true",
        "MAAS_BUCKET": "maas-image-layout-test",
        **{k: v for k, v in _env(dockerfile).items() if k.startswith("MAAS_")},
    }
    commands = sorted(set(image_functions(image_template).values()))
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(task_root), str(ROOT), str(HEALTH_LIVE_EVENT), *commands],
        capture_output=True,
        text=True,
        env=env,
        cwd=task_root,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["imported"] == commands
    assert report["health_live"] == 200


# The repository's own folders leave sys.path, so maas and functions can only come from the task root;
# third-party packages still come from the test venv (the image's pip install is not replayed here).
_IMPORT_PROBE = """
import importlib, importlib.util, json, os, sys
task_root, repo, event_path, *commands = sys.argv[1:]
drop = {os.path.realpath(p) for p in (repo, os.path.join(repo, "shared"), os.path.join(repo, "functions"))}
sys.path[:] = [task_root] + [p for p in sys.path if p and os.path.realpath(p) not in drop]
imported, health = [], None
for command in commands:
    modname, fname = command.rsplit(".", 1)
    assert modname.split(".")[0] not in sys.builtin_module_names, modname
    module = importlib.import_module(modname.replace("/", "."))
    assert os.path.realpath(module.__file__).startswith(os.path.realpath(task_root)), module.__file__
    handler = getattr(module, fname)
    assert callable(handler), command
    imported.append(command)
    if modname == "functions.infer.app":
        with open(event_path) as f:
            health = handler(json.load(f), None)["statusCode"]
import maas
assert os.path.realpath(maas.__file__).startswith(os.path.realpath(task_root)), maas.__file__
for offline in ("training", "local", "cli"):
    assert importlib.util.find_spec("maas." + offline) is None, offline
print(json.dumps({"imported": sorted(imported), "health_live": health}))
"""


# ---- reading Dockerfiles and .dockerignore files


@dataclass(frozen=True, slots=True)
class _Instruction:
    keyword: str
    arguments: str


def _instructions(dockerfile: Path) -> list[_Instruction]:
    """Logical lines: continuations joined, comments (and the syntax directive) left out."""
    logical: list[str] = []
    current = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, f"{dockerfile.name} ends inside a continued line"
    instructions = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instructions.append(_Instruction(keyword.upper(), " ".join(arguments.split())))
    return instructions


def _arg_defaults(dockerfile: Path) -> dict[str, str]:
    defaults = {}
    for instruction in _instructions(dockerfile):
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    return defaults


def _env(dockerfile: Path) -> dict[str, str]:
    """The environment the image ends with: the base image's, then each ENV in order."""
    env = dict(BASE_IMAGE_ENV)
    for instruction in _instructions(dockerfile):
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                env[name] = _substitute(value, env)
    return env


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), text)


def _run_text(dockerfile: Path) -> str:
    return "\n".join(i.arguments for i in _instructions(dockerfile) if i.keyword == "RUN")


def _pip_installs(dockerfile: Path) -> Iterator[str]:
    for command in re.split(r"&&|;", _run_text(dockerfile)):
        if re.search(r"\bpip3? install\b", command):
            yield command.strip()


def _pip_install_names(arguments: list[str]) -> list[str]:
    """The requirement specifiers named on a pip install line (not option values such as --target's)."""
    names = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument.startswith("-"):
            skip = "=" not in argument and argument in _PIP_OPTIONS_WITH_VALUES
        else:
            names.append(argument)
    return names


_PIP_OPTIONS_WITH_VALUES = frozenset(
    {"-r", "--requirement", "-c", "--constraint", "-t", "--target", "-i", "--index-url", "--extra-index-url"}
    | {
        "-f",
        "--find-links",
        "--prefix",
        "--root",
        "--platform",
        "--python-version",
        "--abi",
        "--implementation",
    }
)


def _copy_arguments(instruction: _Instruction) -> list[str]:
    arguments = [a for a in shlex.split(instruction.arguments) if not a.startswith("--")]
    assert len(arguments) >= 2, instruction
    return arguments


def _requirements(text: str | None = None) -> dict[str, Requirement]:
    lines = (REQUIREMENTS.read_text(encoding="utf-8") if text is None else text).splitlines()
    requirements = [
        Requirement(line.split("#", 1)[0].strip()) for line in lines if line.split("#", 1)[0].strip()
    ]
    return {canonicalize_name(r.name): r for r in requirements}


def _ignore_patterns(dockerfile: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, regex) per line of <Dockerfile>.dockerignore, in order: BuildKit's own context filter."""
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    patterns = []
    for raw in ignore_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = PurePosixPath(line.removeprefix("!").strip("/")).as_posix()
        patterns.append((excludes, re.compile(_glob_regex(pattern))))
    return patterns


def _glob_regex(pattern: str) -> str:
    """Docker's matching: `**` spans folders (none included), `*` and `?` stay within one."""
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            regex += ".*"
            index += 2
        elif pattern[index] == "*":
            regex += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            regex += "[^/]"
            index += 1
        else:
            regex += re.escape(pattern[index])
            index += 1
    return regex


def _ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """As Docker decides: the last pattern that matches the path, or a folder above it, wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for excludes, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = excludes
    return ignored


def _replay_copies(dockerfile: Path, into: Path) -> Path:
    """Replay the COPY steps that land under the image's task root into `into`; returns the task root."""
    patterns = _ignore_patterns(dockerfile)
    env = dict(BASE_IMAGE_ENV)
    task_root = PurePosixPath(BASE_IMAGE_ENV["LAMBDA_TASK_ROOT"])
    for instruction in _instructions(dockerfile):
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                env[name] = _substitute(value, env)
            task_root = PurePosixPath(env["LAMBDA_TASK_ROOT"])
        if instruction.keyword != "COPY":
            continue
        *sources, destination = _copy_arguments(instruction)
        target = PurePosixPath(_substitute(destination, env))
        if not target.is_relative_to(task_root):
            continue
        for source in sources:
            path = ROOT / source
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if _ignored(relative, patterns):
                    continue
                if path.is_dir():
                    copied = into / target.relative_to(task_root) / file.relative_to(path)
                elif destination.endswith("/"):
                    copied = into / target.relative_to(task_root) / file.name
                else:
                    copied = into / target.relative_to(task_root)
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, copied)
    return into


def _names(node: Any, logical_ids: set[str]) -> bool:
    text = json.dumps(node)
    return any(re.search(rf'"{re.escape(lid)}"|\$\{{{re.escape(lid)}[.}}]', text) for lid in logical_ids)
