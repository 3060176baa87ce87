"""Derive the container-image variant of template.yaml, so the zip and image deployments share one source.

Lambda limits a zip function and its layers to 250 MB unzipped; a container image may be 10 GB. The image
variant deploys the same stack, with every `AWS::Serverless::Function` running one image
(infra/containers/Dockerfile) instead of its CodeUri folder plus the layer:

- it gets `PackageType: Image`, `ImageUri: !Ref ImageUri` (a new parameter) and `ImageConfig.Command`
  set to its handler as the image lays it out (`functions.<name>.app.lambda_handler`);
- it loses the properties that only a zip function has (CodeUri, Handler, Runtime, Layers, ...), in its
  own properties and in Globals.Function;
- an AWS_LAMBDA_EXEC_WRAPPER shipped with its code (/var/task/<file> in the zip) moves with the code, to
  /var/task/<CodeUri>/<file> (the generate function's streaming_bootstrap);
- the layers those functions used are dropped, with any output that names them.

Everything else (parameters, conditions, IAM, bucket, queues, API, outputs) is copied unchanged, so the
transform keeps working whatever else template.yaml grows. It reads CloudFormation's short tags and
writes their long form (`{"Ref": ...}`), which CloudFormation and SAM read the same way:

    python infra/container_template.py --out infra/containers/template.yaml
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from maas.local.cloudformation_yaml import parse_cloudformation_yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TEMPLATE = ROOT / "template.yaml"
FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPES = frozenset({"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"})
IMAGE_URI_PARAMETER = "ImageUri"
TASK_ROOT = PurePosixPath("/var/task")
EXEC_WRAPPER = "AWS_LAMBDA_EXEC_WRAPPER"
# Lambda rejects these on an image function: the image holds the code, the runtime and what layers added.
# SnapStart and runtime management exist for managed runtimes only.
ZIP_ONLY_PROPERTIES = (
    "CodeUri",
    "InlineCode",
    "Handler",
    "Runtime",
    "Layers",
    "RuntimeManagementConfig",
    "SnapStart",
)
HEADER = (
    "# Generated from template.yaml by infra/container_template.py (make container-template); do not edit.\n"
    "# Every function runs the image at the ImageUri parameter (infra/containers/Dockerfile).\n"
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class ContainerTemplateError(ValueError):
    """template.yaml has something the image variant cannot express (inline code, an S3 CodeUri, ...)."""


def load_template(path: Path = SOURCE_TEMPLATE) -> dict[str, Any]:
    """template.yaml as the local emulator reads it: short tags (!Ref, !Sub ...) in their long form."""
    return parse_cloudformation_yaml(path.read_text(encoding="utf-8"))


def handler_command(code_uri: str, handler: str) -> str:
    """The handler as the image runs it: `functions/infer/` + `app.lambda_handler` gives
    `functions.infer.app.lambda_handler`. The Lambda runtime imports the part before the last dot with
    importlib, so a dotted package path works, even through a folder named like a keyword (`async`)."""
    module, dot, function = handler.rpartition(".")
    if not dot or not module or not function:
        raise ContainerTemplateError(f"Handler: expected '<module>.<function>', got {handler!r}")
    folder = PurePosixPath(code_uri.strip("/"))
    if folder.is_absolute() or ".." in folder.parts:
        raise ContainerTemplateError(f"CodeUri: expected a folder inside the repository, got {code_uri!r}")
    parts = [*(p for p in folder.parts if p != "."), *module.replace("/", ".").split(".")]
    return ".".join([*parts, function])


def handler_file(command: str, root: Path = ROOT) -> Path:
    """The source file a handler command imports, relative to the image's task root (the repository root)."""
    module = command.rpartition(".")[0]
    return root.joinpath(*module.split(".")).with_suffix(".py")


def image_functions(document: dict[str, Any]) -> dict[str, str]:
    """Each function's logical id and the handler command its image runs."""
    return {
        logical_id: resource["Properties"]["ImageConfig"]["Command"][0]
        for logical_id, resource in document.get("Resources", {}).items()
        if resource.get("Type") == FUNCTION_TYPE
    }


def container_template(source: dict[str, Any]) -> dict[str, Any]:
    """The image variant of the SAM template `source` (parsed, long-form intrinsics); `source` stays as is."""
    document = copy.deepcopy(source)
    resources: dict[str, Any] = document.get("Resources") or {}
    parameters: dict[str, Any] = document.setdefault("Parameters", {})
    if IMAGE_URI_PARAMETER in parameters or IMAGE_URI_PARAMETER in resources:
        raise ContainerTemplateError(f"template: the name {IMAGE_URI_PARAMETER!r} is taken already")
    globals_function: dict[str, Any] = (document.get("Globals") or {}).get("Function") or {}
    functions = [lid for lid, r in resources.items() if r.get("Type") == FUNCTION_TYPE]
    if not functions:
        raise ContainerTemplateError(f"template: expected at least one {FUNCTION_TYPE}, found none")

    layers = set(_references(globals_function.get("Layers")))
    for logical_id in functions:
        properties: dict[str, Any] = resources[logical_id].setdefault("Properties", {})
        layers.update(_references(properties.get("Layers")))
        _to_image_function(logical_id, properties, globals_function)
    _drop_globals(document)
    _drop_layers(document, {lid for lid in layers if resources.get(lid, {}).get("Type") in LAYER_TYPES})
    parameters[IMAGE_URI_PARAMETER] = {
        "Type": "String",
        "MinLength": 1,
        "Description": (
            "The maas image every function runs (infra/containers/Dockerfile), pushed to ECR in this "
            "region: <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> or @sha256:<digest>. "
            "Its architecture must match the functions' Architectures."
        ),
    }
    return document


def render(document: dict[str, Any]) -> str:
    body: str = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110, allow_unicode=True
    )
    return HEADER + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=SOURCE_TEMPLATE, help="the SAM template to read")
    parser.add_argument("--out", type=Path, help="where to write the image template (default: stdout)")
    args = parser.parse_args(argv)
    try:
        text = render(container_template(load_template(args.template)))
    except ContainerTemplateError as exc:
        print(f"container_template: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _to_image_function(logical_id: str, properties: dict[str, Any], globals_function: dict[str, Any]) -> None:
    if properties.get("PackageType", "Zip") != "Zip":
        raise ContainerTemplateError(
            f"{logical_id}: expected a Zip function, got {properties['PackageType']}"
        )
    code_uri = _string_property(logical_id, "CodeUri", properties, globals_function)
    command = handler_command(code_uri, _string_property(logical_id, "Handler", properties, globals_function))
    _move_exec_wrapper(properties, code_uri)
    for name in ZIP_ONLY_PROPERTIES:
        properties.pop(name, None)
    properties["PackageType"] = "Image"
    properties["ImageUri"] = {"Ref": IMAGE_URI_PARAMETER}
    properties.setdefault("ImageConfig", {})["Command"] = [command]


def image_exec_wrapper(wrapper: str, code_uri: str) -> str:
    """Where an exec wrapper the zip holds at the task root lies in the image: under the function's folder.
    Any other path (a layer's /opt/..., a relative one) is left as it is."""
    path = PurePosixPath(wrapper)
    if not path.is_relative_to(TASK_ROOT) or path == TASK_ROOT:
        return wrapper
    folder = [part for part in PurePosixPath(code_uri.strip("/")).parts if part != "."]
    return str(TASK_ROOT.joinpath(*folder, path.relative_to(TASK_ROOT)))


def _move_exec_wrapper(properties: dict[str, Any], code_uri: str) -> None:
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    wrapper = variables.get(EXEC_WRAPPER)
    if isinstance(wrapper, str):
        variables[EXEC_WRAPPER] = image_exec_wrapper(wrapper, code_uri)


def _drop_layers(document: dict[str, Any], layers: set[str]) -> None:
    """Remove `layers` and the outputs that name them; anything else naming them is a template to fix."""
    for logical_id in layers:
        del document["Resources"][logical_id]
    outputs: dict[str, Any] = document.get("Outputs") or {}
    for name in [n for n, output in outputs.items() if set(_references(output)) & layers]:
        del outputs[name]
    if outputs == {} and "Outputs" in document:
        del document["Outputs"]
    leftover = set(_references(document)) & layers
    if leftover:
        raise ContainerTemplateError(
            f"template: expected the layers {sorted(layers)} to be used by functions only, "
            f"but something else refers to {sorted(leftover)}"
        )


def _string_property(
    logical_id: str, name: str, properties: dict[str, Any], globals_function: dict[str, Any]
) -> str:
    value = properties.get(name, globals_function.get(name))
    if not isinstance(value, str):
        raise ContainerTemplateError(
            f"{logical_id}: expected {name} to be a string (a folder or module path), got {value!r}"
        )
    return value


def _drop_globals(document: dict[str, Any]) -> None:
    globals_section = document.get("Globals")
    if not isinstance(globals_section, dict) or not isinstance(globals_section.get("Function"), dict):
        return
    function = globals_section["Function"]
    for name in ZIP_ONLY_PROPERTIES:
        function.pop(name, None)
    if not function:
        del globals_section["Function"]
    if not globals_section:
        del document["Globals"]


def _references(node: Any) -> Iterator[str]:
    """The logical ids `node` refers to: Ref, Fn::GetAtt, ${Name} or ${Name.Attr} in Fn::Sub, DependsOn."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) and value else value
                if isinstance(target, str):
                    yield target.split(".", 1)[0]
            elif key == "Fn::Sub":
                template = value[0] if isinstance(value, list) and value else value
                if isinstance(template, str):
                    yield from (name.split(".", 1)[0] for name in _SUB_VARIABLE.findall(template))
                if isinstance(value, list):
                    yield from _references(value[1:])
            elif key == "DependsOn":
                yield from [value] if isinstance(value, str) else _strings(value)
            else:
                yield from _references(value)


def _strings(node: Any) -> list[str]:
    return [item for item in node if isinstance(item, str)] if isinstance(node, list) else []


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # yaml ships no stubs here
    """Block style for multi-line strings, and no anchors: CloudFormation does not read YAML aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


if __name__ == "__main__":
    sys.exit(main())
