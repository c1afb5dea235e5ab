"""Read what template.yaml declares, so the local stack creates the same resources the SAM app does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML arrives with cfn-lint (dev only)


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A YAML loader that keeps CloudFormation short-form tags (``!Ref X`` -> ``{"Ref": "X"}``)."""


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@dataclass(frozen=True)
class Function:
    logical_id: str
    handler: str

    @property
    def name(self) -> str:
        return self.logical_id


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    definition_uri: str
    type: str
    substitutions: dict[str, Any]
    name: str = ""
    """The deployed name (``Name``, with ``${AWS::StackName}`` resolved), or the logical id when there is none."""


@dataclass(frozen=True)
class EventRule:
    """An ``EventBridgeRule`` event of a function: the pattern EventBridge matches and the function it invokes."""

    function: str
    name: str
    pattern: dict[str, Any]


AGENT_LOOP = "AgentLoop"
"""The logical id of the agent loop's state machine in template.yaml."""
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
"""Pseudo parameters as the local stack sees them (its ``AWS::StackName`` is :data:`STACK_NAME`)."""
STACK_NAME = "stepfold"


class TemplateError(ValueError):
    """template.yaml lacks something the local stack needs."""


class Template:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.resources: dict[str, Any] = doc.get("Resources", {})
        self.parameters: dict[str, Any] = doc.get("Parameters", {})
        self.globals: dict[str, Any] = doc.get("Globals", {}).get("Function", {})

    def _of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, v.get("Properties", {})) for k, v in self.resources.items() if v.get("Type") == kind]

    def functions(self) -> list[Function]:
        return [
            Function(k, p.get("Handler") or self.globals["Handler"])
            for k, p in self._of_type("AWS::Serverless::Function")
        ]

    def memory_mb(self, logical_id: str, parameters: Mapping[str, str] | None = None) -> int:
        """A function's ``MemorySize``: its own (a number or a parameter's ``!Ref``: ``parameters``, else the
        default), else the Globals'."""
        own = dict(self._of_type("AWS::Serverless::Function")).get(logical_id)
        if own is None:
            raise TemplateError(f"template.yaml has no function {logical_id}")
        return int(self._parameter(own.get("MemorySize", self.globals.get("MemorySize", 128)), parameters or {}))

    def runtime(self) -> str:
        return str(self.globals.get("Runtime", "python3.12"))

    def function_environment(self) -> dict[str, str]:
        """Global environment variables with literal values (references are resolved by the stack)."""
        variables = self.globals.get("Environment", {}).get("Variables", {})
        return {k: str(v) for k, v in variables.items() if isinstance(v, str | int)}

    def _table(self) -> dict[str, Any]:
        tables = self._of_type("AWS::DynamoDB::Table")
        if len(tables) != 1:
            raise TemplateError(f"expected one AWS::DynamoDB::Table, found {len(tables)}")
        return tables[0][1]

    def table_properties(self) -> dict[str, Any]:
        """Keys, attributes, indexes and billing mode, as CreateTable takes them."""
        props = self._table()
        keep = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
        return {k: props[k] for k in keep if k in props}

    def ttl_attribute(self) -> str | None:
        ttl = self._table().get("TimeToLiveSpecification") or {}
        return str(ttl["AttributeName"]) if ttl.get("Enabled") else None

    def state_machines(self) -> list[StateMachine]:
        """Every ``AWS::Serverless::StateMachine``: the agent loop and the example workflows that run agents."""
        return [
            StateMachine(
                logical_id,
                props["DefinitionUri"],
                props.get("Type", "STANDARD"),
                props.get("DefinitionSubstitutions", {}),
                str(self.resolve(props["Name"]) if "Name" in props else logical_id),
            )
            for logical_id, props in self._of_type("AWS::Serverless::StateMachine")
        ]

    def state_machine(self, logical_id: str = AGENT_LOOP) -> StateMachine:
        """The state machine ``logical_id``: by default the agent loop, the one every thread runs in."""
        found = [m for m in self.state_machines() if m.logical_id == logical_id]
        if len(found) != 1:
            raise TemplateError(f"expected one AWS::Serverless::StateMachine {logical_id}, found {len(found)}")
        return found[0]

    def workflows(self) -> list[StateMachine]:
        """The state machines besides the agent loop: the loop's own bursts (express mode) and workflows that run
        agents as steps. Those the agent loop refers to come first (it is created after them, the rest after it)."""
        loop = self.state_machine()
        refs = {raw.get("Ref") for raw in loop.substitutions.values() if isinstance(raw, dict)}
        others = [m for m in self.state_machines() if m.logical_id != AGENT_LOOP]
        return sorted(others, key=lambda m: m.logical_id not in refs)

    def loop_parts(self) -> list[StateMachine]:
        """The state machines the agent loop refers to (its Express bursts): created before it."""
        loop = self.state_machine()
        refs = {raw.get("Ref") for raw in loop.substitutions.values() if isinstance(raw, dict)}
        return [m for m in self.workflows() if m.logical_id in refs]

    def resolve(self, value: Any) -> Any:
        """A template value with ``!Sub`` of pseudo parameters and ``!Ref`` of parameters (their defaults) resolved,
        in nested lists and objects too; other intrinsics are left as they are."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            known = {**PSEUDO, "AWS::StackName": STACK_NAME}
            known.update({k: str(v.get("Default", "")) for k, v in self.parameters.items()})
            return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: known.get(m.group(1), m.group(0)), value["Fn::Sub"])
        if set(value) == {"Ref"} and value["Ref"] in self.parameters:
            return self.parameters[value["Ref"]].get("Default")
        return {k: self.resolve(v) for k, v in value.items()}

    def event_rules(self) -> list[EventRule]:
        """Every function's ``EventBridgeRule`` events, patterns resolved."""
        rules = []
        for logical_id, props in self._of_type("AWS::Serverless::Function"):
            for name, event in (props.get("Events") or {}).items():
                if event.get("Type") == "EventBridgeRule":
                    rules.append(EventRule(logical_id, name, self.resolve(event["Properties"]["Pattern"])))
        return rules

    def condition(self, name: str, parameters: Mapping[str, str] | None = None) -> bool:
        """A condition of ``Conditions`` over the parameters (their defaults, ``parameters`` winning): ``!Equals``
        of a ``!Ref`` and a literal, ``!Not``, and ``!Condition`` are what template.yaml uses."""
        return self._holds(self.doc.get("Conditions", {})[name], parameters or {})

    def _holds(self, expression: Any, parameters: Mapping[str, str]) -> bool:
        (kind, args), *_ = expression.items()
        if kind == "Fn::Not":
            return not self._holds(args[0], parameters)
        if kind == "Condition":
            return self.condition(args, parameters)
        if kind == "Fn::Equals":
            left, right = (self._parameter(a, parameters) for a in args)
            return bool(left == right)
        raise TemplateError(f"the local stack cannot evaluate the condition {expression}")

    def _parameter(self, value: Any, parameters: Mapping[str, str]) -> Any:
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in self.parameters:
            name = value["Ref"]
            return str(parameters.get(name, self.parameters[name].get("Default", "")))
        return str(value)

    def substitutions(
        self,
        machine: StateMachine,
        function_arns: dict[str, str],
        overrides: dict[str, Any],
        parameters: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Resolve ``!GetAtt Fn.Arn`` to local function ARNs, ``!Ref X`` to the ARN of a function or state machine in
        ``function_arns`` or to a parameter's value (``parameters``, else its default), ``!If`` by its condition;
        overrides win."""
        values: dict[str, Any] = {}
        for key, given in machine.substitutions.items():
            raw = given
            if isinstance(given, dict) and "Fn::If" in given:
                condition, yes, no = given["Fn::If"]
                raw = yes if self.condition(condition, parameters) else no
            if key in overrides:
                values[key] = overrides[key]
            elif isinstance(raw, dict) and "Fn::GetAtt" in raw:
                values[key] = function_arns[raw["Fn::GetAtt"][0]]
            elif isinstance(raw, dict) and "Ref" in raw:
                ref = raw["Ref"]
                if ref in function_arns:
                    values[key] = function_arns[ref]
                elif ref in self.parameters:
                    values[key] = (parameters or {}).get(ref, self.parameters[ref].get("Default"))
                else:
                    raise TemplateError(f"substitution {key} refers to {ref}, which the local stack cannot resolve")
            else:
                values[key] = raw
        return values


def load_template(path: Path) -> Template:
    return Template(yaml.load(path.read_text(), Loader=_CfnLoader))  # noqa: S506 - SafeLoader subclass
