"""The CloudFormation evaluator: parameter values, Conditions and the intrinsics a local run can know.

Parameters are known when a template is read (defaults, then overrides), so Conditions are evaluated
then, as CloudFormation does at deploy time: a resource whose Condition is false does not exist,
every Fn::If takes its branch and AWS::NoValue removes its key. Other intrinsics stay as
{"Ref": ...} / {"Fn::Sub": ...} dicts until an `IntrinsicResolver` that knows the local stack's
values (bucket names, queue URLs) turns them into strings.

This module knows CloudFormation only; what SAM builds from the resources is maas.local.sam's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from maas.errors import ConfigurationError

logger = logging.getLogger(__name__)

NO_VALUE = "AWS::NoValue"
DEFAULT_REGION = "us-east-1"

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ConfigurationError):
    """template.yaml cannot be served as written (malformed event, duplicate route). HTTP 500."""


class UnresolvedIntrinsicError(ConfigurationError):
    """An intrinsic has no local value (e.g. a GetAtt of a resource the emulator does not create)."""


class NoValueError(UnresolvedIntrinsicError):
    """The value is AWS::NoValue: CloudFormation leaves the property out, so the local stack does too."""


class _NoValue:
    """What AWS::NoValue evaluates to while a structure is walked: the key or item is then dropped."""


_NO_VALUE: Final = _NoValue()


@dataclass(frozen=True, slots=True)
class TemplateParameter:
    name: str
    type: str
    default: Any = None
    allowed_values: tuple[str, ...] = ()
    allowed_pattern: str | None = None
    min_value: float | None = None
    max_value: float | None = None

    @property
    def is_list(self) -> bool:
        """A Ref to it is a list (CommaDelimitedList, List<...>), not a string."""
        return self.type == "CommaDelimitedList" or self.type.startswith("List<")

    def check(self, value: str) -> None:
        """CloudFormation refuses a value outside AllowedValues or AllowedPattern, and a Number that is not
        one or lies outside MinValue..MaxValue; so does the local stack."""
        items = [v.strip() for v in value.split(",")] if self.is_list else [value]
        for item in items:
            if self.type in ("Number", "List<Number>"):
                self._check_number(item)
            if self.allowed_values and item not in self.allowed_values:
                raise TemplateError(
                    f"parameter {self.name}: expected one of {', '.join(self.allowed_values)}, got {item!r}"
                )
            if self.allowed_pattern is not None and not re.fullmatch(self.allowed_pattern, item):
                raise TemplateError(
                    f"parameter {self.name}: expected a value matching {self.allowed_pattern}, got {item!r}"
                )

    def _check_number(self, item: str) -> None:
        try:
            number = float(item)
        except ValueError:
            raise TemplateError(f"parameter {self.name}: expected a number, got {item!r}") from None
        low = "-inf" if self.min_value is None else f"{self.min_value:g}"
        high = "inf" if self.max_value is None else f"{self.max_value:g}"
        if (self.min_value is not None and number < self.min_value) or (
            self.max_value is not None and number > self.max_value
        ):
            raise TemplateError(
                f"parameter {self.name}: expected a number from {low} to {high}, got {item!r}"
            )


class ParameterisedTemplate(Protocol):
    """What a resolver needs of a read template: its declared parameters, the values it was read with
    (defaults with the overrides on top) and its Conditions as written."""

    @property
    def parameters(self) -> Mapping[str, TemplateParameter]: ...

    @property
    def parameter_values(self) -> Mapping[str, str]: ...

    @property
    def conditions(self) -> Mapping[str, Any]: ...


def declared_parameters(parameters: Any) -> dict[str, TemplateParameter]:
    """A template's Parameters section as written."""
    if not isinstance(parameters, dict):
        raise TemplateError("template: expected Parameters to be a mapping")
    declared = {}
    for name, written in parameters.items():
        spec = written if isinstance(written, dict) else {}
        declared[name] = TemplateParameter(
            name=name,
            type=str(spec.get("Type", "String")),
            default=spec.get("Default"),
            allowed_values=tuple(scalar_text(v) for v in spec.get("AllowedValues") or ()),
            allowed_pattern=spec.get("AllowedPattern"),
            min_value=_optional_number(spec.get("MinValue")),
            max_value=_optional_number(spec.get("MaxValue")),
        )
    return declared


def _optional_number(written: Any) -> float | None:
    return None if written is None else float(written)


def parameter_values(
    declared: Mapping[str, TemplateParameter], overrides: Mapping[str, str]
) -> dict[str, str]:
    """Defaults, then overrides. An undeclared override is a typo, which CloudFormation refuses too."""
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(
            f"parameter overrides: expected names from the template's Parameters "
            f"({', '.join(declared) or 'none'}), got {', '.join(unknown)}"
        )
    for name, value in overrides.items():
        declared[name].check(value)
    values = {name: scalar_text(p.default) for name, p in declared.items() if p.default is not None}
    values.update(overrides)
    return values


def deployed_resources(
    resources: Mapping[str, Any], resolver: IntrinsicResolver
) -> dict[str, dict[str, Any]]:
    """The resources whose Condition holds, with each Fn::If's branch taken and AWS::NoValue keys removed."""
    deployed: dict[str, dict[str, Any]] = {}
    for rid, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        condition = resource.get("Condition")
        if condition is not None:
            try:
                exists = resolver.condition(str(condition))
            except UnresolvedIntrinsicError as exc:
                raise TemplateError(
                    f"{rid}.Condition: {exc}; give the parameter a value (a parameter override)"
                ) from None
            if not exists:
                logger.debug("%s: condition %s is false, so the resource does not exist", rid, condition)
                continue
        deployed[rid] = with_conditions_applied(resource, resolver, rid)
    return deployed


def with_conditions_applied(value: Any, resolver: IntrinsicResolver, where: str) -> dict[str, Any]:
    """A mapping section (a resource, Globals) as deployed; TemplateError names `where` otherwise."""
    try:
        applied = resolver.apply_conditions(value)
    except UnresolvedIntrinsicError as exc:
        raise TemplateError(f"{where}: {exc}; give the parameter a value (a parameter override)") from None
    if not isinstance(applied, dict):
        raise TemplateError(f"{where}: expected a mapping, got {applied!r}")
    return applied


@dataclass(frozen=True, slots=True)
class IntrinsicResolver:
    """Resolves the intrinsics a local run can know: parameter and resource Refs, pseudo parameters,
    Conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or over parameters) and Fn::If, Fn::GetAtt of the
    attributes the local stack created (a queue's Arn, QueueName, QueueUrl), and Fn::Sub, Fn::Join,
    Fn::Select and Fn::Split over those. Anything else raises UnresolvedIntrinsicError.

    `resources` holds what a Ref returns (a bucket's name, a queue's URL); `attributes` holds
    resource -> attribute -> value for Fn::GetAtt; `conditions` the template's Conditions as written.
    """

    parameters: Mapping[str, str]
    resources: Mapping[str, str] = field(default_factory=dict)
    region: str = DEFAULT_REGION
    account_id: str = "123456789012"
    partition: str = "aws"
    stack_name: str = "maas-local"
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    # Parameters a Ref turns into a list (CommaDelimitedList); elsewhere they read as "a,b".
    list_parameters: frozenset[str] = frozenset()

    @classmethod
    def for_template(
        cls,
        template: ParameterisedTemplate,
        overrides: Mapping[str, str] | None = None,
        *,
        resources: Mapping[str, str] | None = None,
        attributes: Mapping[str, Mapping[str, str]] | None = None,
        region: str = DEFAULT_REGION,
    ) -> IntrinsicResolver:
        """The template's parameter values (defaults and the overrides it was read with), then `overrides`."""
        values = dict(template.parameter_values)
        for name, parameter in template.parameters.items():
            if name not in values and parameter.default is not None:
                values[name] = scalar_text(parameter.default)
        values.update(overrides or {})
        return cls(
            parameters=values,
            resources=dict(resources or {}),
            region=region,
            attributes={rid: dict(by_name) for rid, by_name in (attributes or {}).items()},
            conditions=dict(template.conditions),
            list_parameters=frozenset(name for name, p in template.parameters.items() if p.is_list),
        )

    def resolve(self, value: Any) -> str:
        """A scalar property's local value as a string; NoValueError when it is AWS::NoValue."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            fn, arg = next(iter(value.items()))
            if fn == "Ref":
                return self._ref(str(arg))
            if fn == "Fn::GetAtt":
                return self._get_att(arg)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::If":
                return self.resolve(self._branch(arg))
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                items = self.resolve_value(arg[1])
                if isinstance(items, list):
                    return str(arg[0]).join(scalar_text(item) for item in items)
            if fn == "Fn::Select":
                return scalar_text(self._select(arg))
        raise UnresolvedIntrinsicError(f"intrinsic {value!r}: no local value")

    def resolve_value(self, value: Any) -> Any:
        """A structured property with every intrinsic evaluated: Fn::If takes its branch, AWS::NoValue
        drops its key or item (None at the top), a Ref to a list parameter is a list; plain values stay."""
        resolved = self._walk(value, evaluate=True)
        return None if resolved is _NO_VALUE else resolved

    def apply_conditions(self, value: Any) -> Any:
        """`value` as CloudFormation deploys it: each Fn::If replaced by its branch and AWS::NoValue keys and
        items removed (None at the top); every other intrinsic stays for a resolver that knows more."""
        applied = self._walk(value, evaluate=False)
        return None if applied is _NO_VALUE else applied

    def condition(self, name: str) -> bool:
        """Whether the named condition of the template holds for these parameter values."""
        return self._condition(name, ())

    def resolve_number(self, value: Any, default: float) -> float:
        """A numeric property (Timeout, BatchSize ...): its local value, or `default` when it has none."""
        try:
            return float(self.resolve(value))
        except (UnresolvedIntrinsicError, ValueError):
            return default

    def resolve_environment(self, variables: Mapping[str, Any], *, owner: str) -> dict[str, str]:
        """Every variable of `owner`'s Environment.Variables with a local value; ones without are left out
        and logged, never guessed."""
        resolved: dict[str, str] = {}
        for name, raw in variables.items():
            try:
                resolved[name] = self.resolve(raw)
            except NoValueError:
                continue  # CloudFormation leaves the variable out, and so does Lambda
            except UnresolvedIntrinsicError as exc:
                logger.warning("%s: environment variable %s left unset (%s)", owner, name, exc)
        return resolved

    def _walk(self, value: Any, *, evaluate: bool) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                fn, arg = next(iter(value.items()))
                if fn == "Fn::If":
                    return self._walk(self._branch(arg), evaluate=evaluate)
                if fn == "Ref" and arg == NO_VALUE:
                    return _NO_VALUE
                if evaluate and (fn == "Ref" or fn.startswith("Fn::")):
                    return self._evaluate(fn, arg)
            walked = {key: self._walk(item, evaluate=evaluate) for key, item in value.items()}
            return {key: item for key, item in walked.items() if item is not _NO_VALUE}
        if isinstance(value, list):
            items = [self._walk(item, evaluate=evaluate) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        return value

    def _evaluate(self, fn: str, arg: Any) -> Any:
        """One intrinsic as a structured value: lists stay lists."""
        if fn == "Ref" and arg in self.list_parameters and arg in self.parameters:
            return _list_parameter(self.parameters[str(arg)])
        if fn == "Fn::Split" and isinstance(arg, list) and len(arg) == 2:
            return self.resolve(arg[1]).split(str(arg[0]))
        if fn == "Fn::Select":
            return self._walk(self._select(arg), evaluate=True)
        if fn == "Fn::If":
            return self._walk(self._branch(arg), evaluate=True)
        return self.resolve({fn: arg})

    def _select(self, arg: Any) -> Any:
        if isinstance(arg, list) and len(arg) == 2:
            items = self.resolve_value(arg[1])
            try:
                index = int(self.resolve(arg[0]))
            except ValueError:
                index = -1
            if isinstance(items, list) and 0 <= index < len(items):
                return items[index]
        raise UnresolvedIntrinsicError(f"Fn::Select {arg!r}: expected [index, list] with the index in range")

    def _branch(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise TemplateError(f"Fn::If {arg!r}: expected [condition name, value if true, value if false]")
        return arg[1] if self.condition(arg[0]) else arg[2]

    def _condition(self, name: str, chain: tuple[str, ...]) -> bool:
        if name in chain:
            raise TemplateError(f"Conditions: expected no cycle, got {' -> '.join((*chain, name))}")
        if name not in self.conditions:
            known = ", ".join(self.conditions) or "none"
            raise TemplateError(f"condition {name!r}: expected one of the template's Conditions ({known})")
        return self._holds(self.conditions[name], (*chain, name))

    def _holds(self, expression: Any, chain: tuple[str, ...]) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            fn, arg = next(iter(expression.items()))
            if fn == "Condition":
                return self._condition(str(arg), chain)
            if isinstance(arg, list):
                if fn == "Fn::Equals" and len(arg) == 2:
                    return self._comparable(arg[0]) == self._comparable(arg[1])
                if fn == "Fn::Not" and len(arg) == 1:
                    return not self._holds(arg[0], chain)
                if fn == "Fn::And" and arg:
                    return all(self._holds(item, chain) for item in arg)
                if fn == "Fn::Or" and arg:
                    return any(self._holds(item, chain) for item in arg)
        where = f"condition {chain[-1]}" if chain else "condition"
        raise TemplateError(
            f"{where}: expected Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition, got {expression!r}"
        )

    def _comparable(self, value: Any) -> str | tuple[str, ...]:
        resolved = self.resolve_value(value)
        if isinstance(resolved, list):
            return tuple(scalar_text(item) for item in resolved)
        return scalar_text(resolved)

    def _ref(self, name: str) -> str:
        if name == NO_VALUE:
            raise NoValueError(f"Ref {NO_VALUE}: the property is left out")
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }
        for table in (pseudo, self.parameters, self.resources):
            if name in table:
                return table[name]
        raise UnresolvedIntrinsicError(f"Ref {name!r}: no local value")

    def _get_att(self, arg: Any) -> str:
        target = arg.split(".", 1) if isinstance(arg, str) else arg
        if isinstance(target, list) and len(target) == 2:
            resource, attribute = (str(part) for part in target)
            value = self.attributes.get(resource, {}).get(attribute)
            if value is not None:
                return value
        raise UnresolvedIntrinsicError(f"Fn::GetAtt {arg!r}: no local value")

    def _sub(self, arg: Any) -> str:
        variables: Mapping[str, Any]
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict):
            text, variables = arg[0], arg[1]
        else:
            raise UnresolvedIntrinsicError(f"Fn::Sub {arg!r}: expected a string or [string, variables]")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                # Only the variables the text uses: another may have no local value and not matter.
                return self.resolve(variables[name])
            if "." in name:
                return self._get_att(name)
            return self._ref(name)

        return _SUB_VARIABLE.sub(substitute, text)


def _list_parameter(value: str) -> list[str]:
    """A CommaDelimitedList's value as CloudFormation hands it over: an empty value is one empty item."""
    return [item.strip() for item in value.split(",")]


def scalar_text(value: Any) -> str:
    """A value as CloudFormation hands it over as text: booleans lower-case, lists comma-joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
