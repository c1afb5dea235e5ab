"""Least privilege: each function in template.yaml may call exactly the AWS actions its code calls, on the resources
it calls them on: no more, no fewer.

How the expected grants are derived, in three layers:

1. **Every AWS call in the code, found statically.** The AST of every module under ``core/`` and ``functions/`` is
   searched for calls whose method name is an operation of the AWS services (botocore's service models), e.g.
   ``self._db.transact_write_items(...)``. Each one must be classified here: ``OPERATIONS`` says which IAM action it
   is authorised as and ``resource_of`` on which resource. A ``transact_write_items`` is authorised per item, so its
   actions come from the item kinds the calling method builds (``"Put"`` -> ``PutItem``, ``"Update"`` ->
   ``UpdateItem``, ``"ConditionCheck"`` -> ``ConditionCheckItem``, ``"Delete"`` -> ``DeleteItem``).
2. **Capabilities, followed statically.** A capability (``threads.append``) names the adapter method a handler
   reaches (``DynamoThreadStore.append``); its AWS calls are those of that method and of every ``self.<method>()`` it
   calls, transitively. Every AWS call in the code must belong to some capability, so a new call cannot go unseen.
3. **Which function uses which capability: the documented table ``FUNCTIONS``**, with the code path behind each
   entry. (A run of the functional suite with a botocore hook per handler saw no call outside this table.)

The grants are read from each function's inline policy statements, with resources normalised to the template's
logical ids (``!GetAtt ThreadsTable.Arn`` -> ``ThreadsTable``, ``${PayloadBucket.Arn}/*`` -> ``PayloadBucket/*``,
the state machine's ARN by name -> ``AgentLoop``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from infra.local.template import Template, load_template

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("core", "agents", "functions")
SERVICES = (
    *("dynamodb", "s3", "stepfunctions", "secretsmanager", "ses", "sesv2", "bedrock-runtime", "sqs", "sns"),
    *("ssm", "lambda", "events", "scheduler", "kms", "sts", "cloudwatch", "logs", "xray"),
)
"""Whose operation names count as AWS calls: the services the stack uses and their likely neighbours."""

TABLE, INDEX, OBJECTS, SECRET = "ThreadsTable", "ThreadsTable/index/status-updated", "PayloadBucket/*", "Secrets"
MACHINE, ANY, SES_SENDERS = "AgentLoop", "*", "ses:identity/*"
MODELS = ("BedrockModelIds",)
"""Converse is authorised as InvokeModel on the model, and for cross-region inference profiles also on the profile:
both for the ids of the ``BedrockModelIds`` parameter only (``resource_name`` names that statement by it)."""
SECRET_KEYS: dict[str, frozenset[str]] = {
    "StepFunction": frozenset({"openai_api_key", "anthropic_api_key", "reply_signing_key", "mcp_servers"}),
    "RequestHumanFunction": frozenset({"link_signing_key", "notify_webhook_secret", "notify_slack_url"}),
    "ApprovalsFunction": frozenset({"link_signing_key"}),
    "ApiFunction": frozenset(),
    "AuthorizerFunction": frozenset({"api_key", "api_keys"}),
    "RecordEndFunction": frozenset({"notify_webhook_secret", "notify_slack_url", "reply_signing_key"}),
    "TriggersFunction": frozenset({"github_webhook_secret", "slack_signing_secret", "stepfold_webhook_secret"}),
    "LaunchFunction": frozenset(),
}
"""The keys (``functions._wiring.Secrets`` fields) each function's code reads, with the code path in FUNCTIONS. The
secrets it may read follow: those whose ``SECRET_SOURCES`` keys it needs, by the variable that names them in its
environment in template.yaml (issue 13: least privilege for secrets)."""

OPERATIONS: dict[str, tuple[str, ...]] = {
    "query": ("dynamodb:Query",),
    "get_item": ("dynamodb:GetItem",),
    "put_item": ("dynamodb:PutItem",),
    "update_item": ("dynamodb:UpdateItem",),
    "transact_write_items": (),  # per item: see TRANSACTION_ITEMS
    "get_object": ("s3:GetObject",),
    "put_object": ("s3:PutObject",),
    "start_execution": ("states:StartExecution",),
    "send_task_success": ("states:SendTaskSuccess",),
    "send_task_failure": ("states:SendTaskFailure",),
    "get_secret_value": ("secretsmanager:GetSecretValue",),
    "send_email": ("ses:SendEmail",),
    "converse": ("bedrock:InvokeModel",),
}
"""The IAM action each AWS call the code makes is authorised as."""
TRANSACTION_ITEMS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
NOT_AWS = {
    ("functions/timeline.py", "model_view", "count_tokens"),
}
"""Calls that share a name with an AWS operation (bedrock-runtime CountTokens) but are ``ContextOptions``'."""
LIBRARY_CALLS: dict[tuple[str, str, str], str] = {
    ("functions/_wiring.py", "SecretsLoader._stored", "get"): "get_secret_value",
}
"""Calls into a library that makes the AWS call on the client our code hands it, by (path, def, method): Powertools
Parameters' ``SecretsProvider.get`` calls ``get_secret_value`` on the injected Secrets Manager client."""
SETUP_ONLY = {"core/adapters/store/dynamodb.py:create_table"}
"""Code no function runs: creating the table for tests and the local stack (CloudFormation creates the real one)."""


# --- 1. every AWS call in the code -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One AWS call in the source: where (``path:Qual.name`` of the enclosing def), which operation, on what."""

    owner: str
    operation: str
    receiver: str
    grants: frozenset[tuple[str, str]]
    """(IAM action, resource) pairs the call needs."""


@dataclass(frozen=True)
class Def:
    """A function or method and the calls in its body."""

    owner: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: str | None


@cache
def aws_operations() -> frozenset[str]:
    session = botocore.session.get_session()
    return frozenset(xform_name(op) for svc in SERVICES for op in session.get_service_model(svc).operation_names)


@cache
def definitions() -> dict[str, Def]:
    """Every function and method under ``SOURCES``, by ``path:Qual.name``."""
    found: dict[str, Def] = {}
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found.update(_defs(rel, ast.parse(path.read_text(encoding="utf-8")).body, [], None))
    return found


def _defs(rel: str, body: list[ast.stmt], scope: list[str], cls: str | None) -> Iterator[tuple[str, Def]]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield from _defs(rel, node.body, [*scope, node.name], node.name)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            owner = f"{rel}:{'.'.join([*scope, node.name])}"
            yield owner, Def(owner, node, cls)
            yield from _defs(rel, node.body, [*scope, node.name], None)


def _own_calls(definition: Def) -> Iterator[ast.Call]:
    """Calls in the body of ``definition``, not in the functions nested in it (those are their own ``Def``)."""
    todo: list[ast.AST] = list(definition.node.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _strings(definition: Def) -> set[str]:
    return {n.value for n in ast.walk(definition.node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _dict_keys(definition: Def) -> set[str]:
    return {
        key.value
        for node in ast.walk(definition.node)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }


def resource_of(operation: str, definition: Def) -> tuple[str, ...]:
    """The resource an operation acts on. One table, one bucket, one secret, one state machine in this stack."""
    if operation in ("query", "get_item", "put_item", "update_item", "transact_write_items"):
        return (INDEX,) if "IndexName" in _strings(definition) else (TABLE,)
    if operation in ("get_object", "put_object"):
        return (OBJECTS,)
    if operation == "get_secret_value":
        return (SECRET,)  # which secrets: per function, see secrets_of
    if operation == "start_execution":
        return (MACHINE,)
    if operation in ("send_task_success", "send_task_failure"):
        return (ANY,)  # no resource-level permissions: the task token names the execution
    if operation == "send_email":
        return (SES_SENDERS,)
    if operation == "converse":
        return MODELS
    raise AssertionError(f"{definition.owner}: no resource known for {operation}; add it to resource_of")


def _actions(operation: str, definition: Def) -> tuple[str, ...]:
    if operation != "transact_write_items":
        return OPERATIONS[operation]
    kinds = sorted(_dict_keys(definition) & set(TRANSACTION_ITEMS))
    assert kinds, f"{definition.owner}: a transaction with no Put/Update/Delete/ConditionCheck item"
    return tuple(TRANSACTION_ITEMS[kind] for kind in kinds)


@cache
def aws_calls() -> dict[str, tuple[Call, ...]]:
    """Every AWS call under ``SOURCES``, by the def it is in."""
    calls: dict[str, list[Call]] = {}
    for owner, definition in definitions().items():
        path, _, qualname = owner.partition(":")
        for node in _own_calls(definition):
            if not isinstance(node.func, ast.Attribute):
                continue
            operation = LIBRARY_CALLS.get((path, qualname, node.func.attr), node.func.attr)
            if operation not in aws_operations():
                continue
            if (path, qualname, operation) in NOT_AWS or owner in SETUP_ONLY:
                continue
            assert operation in OPERATIONS, (
                f"{owner} calls {ast.unparse(node.func)}(), an AWS operation this test does not classify: "
                "add its IAM action to OPERATIONS (and its resource to resource_of)"
            )
            grants = frozenset(
                (action, resource)
                for action in _actions(operation, definition)
                for resource in resource_of(operation, definition)
            )
            calls.setdefault(owner, []).append(Call(owner, operation, ast.unparse(node.func.value), grants))
    return {owner: tuple(found) for owner, found in calls.items()}


# --- 2. capabilities -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capability:
    """Adapter methods a handler reaches; ``without`` drops operations the documented use never reaches."""

    entries: tuple[str, ...]
    without: frozenset[str] = frozenset()
    why: str = ""


STORE = "core/adapters/store/dynamodb.py:DynamoThreadStore"
APPROVALS = "core/adapters/store/approvals_dynamodb.py:DynamoApprovalStore"
SPEND = "core/adapters/store/spend_dynamodb.py:DynamoSpendLedger"
WIRING = "functions/_wiring.py"
CAPABILITIES: dict[str, Capability] = {
    "threads.load": Capability((f"{STORE}.load",)),
    "threads.create": Capability((f"{STORE}.create",)),
    "threads.append": Capability((f"{STORE}.append",)),
    "threads.append_small": Capability(
        (f"{STORE}.append",),
        without=frozenset({"put_object"}),
        why="appends only events far under the offload threshold (32 kB), so never uploads a payload",
    ),
    "threads.list": Capability((f"{STORE}.list_threads",)),
    "threads.mark_failed": Capability((f"{STORE}.mark_failed",)),
    "approvals.put_pending": Capability((f"{APPROVALS}.put_pending",)),
    "approvals.get": Capability((f"{APPROVALS}.get",)),
    "approvals.close": Capability((f"{APPROVALS}.close",)),
    "spend.spent": Capability((f"{SPEND}.spent",)),
    "spend.add": Capability((f"{SPEND}.add",)),
    "executions.start": Capability((f"{WIRING}:SfnExecutions.start",)),
    "waits.cancel_wait": Capability((f"{WIRING}:TokenWaits.cancel_wait",)),
    "secrets": Capability((f"{WIRING}:SecretsLoader.__call__",)),
    "decide": Capability(("core/services/approvals.py:decide",), why="resumes the wait with the tokens it is given"),
    "approvals.resume": Capability(("functions/approvals.py:_Resume.send_task_success",)),
    "request_human.resume": Capability(("functions/request_human.py:handler",)),
    "email": Capability(("core/adapters/notify.py:EmailNotifier.notify",)),
    "bedrock": Capability(("core/adapters/llm/bedrock.py:BedrockConverse.complete",)),
}


def reached(entry: str) -> list[str]:
    """``entry`` and every def it reaches through ``self.<method>()`` (same class) or ``<function>()`` (same module)."""
    defs = definitions()
    assert entry in defs, f"{entry} is not a function or method under {', '.join(SOURCES)}"
    seen = [entry]
    for owner in seen:
        definition = defs[owner]
        path, _, qualname = owner.partition(":")
        prefix = qualname.rpartition(".")[0]
        for node in _own_calls(definition):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
                target = f"{path}:{prefix}.{func.attr}" if definition.cls else None
            elif isinstance(func, ast.Name):
                target = f"{path}:{func.id}"
            else:
                target = None
            if target in defs and target not in seen:
                seen.append(target)
    return seen


def capability_calls(name: str) -> list[Call]:
    capability = CAPABILITIES[name]
    calls = [
        call
        for entry in capability.entries
        for owner in reached(entry)
        for call in aws_calls().get(owner, ())
        if call.operation not in capability.without
    ]
    assert calls, f"capability {name} reaches no AWS call: is {capability.entries} still the adapter?"
    return calls


# --- 3. which function uses which capability ---------------------------------------------------------------------


@dataclass(frozen=True)
class Uses:
    capabilities: tuple[str, ...]
    platform: frozenset[tuple[str, str]] = frozenset()
    """Grants the platform needs on the function's role, not its code (e.g. an SQS event source polls with it)."""


FUNCTIONS: dict[str, Uses] = {
    # functions/step.py -> core.kernel.runner.advance: load, checkpoint + commit (append); the daily ledger (spent only
    # with a daily budget, add after a priced model call); Runtime.llm_for: provider keys from the secret, and
    # Bedrock's Converse for bedrock: models; send_reply loads the thread and signs with the secret.
    "StepFunction": Uses(("threads.load", "threads.append", "spend.spent", "spend.add", "secrets", "bedrock")),
    # functions/request_human.py: load, approvals.put_pending (get on a conflicting put), SendTaskSuccess when
    # nothing waits, notify (secret for webhook/Slack, SES for email, link signing key). action=expire:
    # core.services.approvals.expire appends one HumanResponse(expired) of a few hundred bytes, then approvals.close.
    "RequestHumanFunction": Uses(
        (
            "threads.load",
            "threads.append_small",
            "approvals.put_pending",
            "approvals.close",
            "request_human.resume",
            "secrets",
            "email",
        )
    ),
    # functions/approvals.py: verify the link (secret), show (approvals.get, threads.load), answer with
    # core.services.approvals.decide (append a response that may carry large edited args, approvals.close, resume via
    # _Resume.send_task_success).
    "ApprovalsFunction": Uses(
        (
            "secrets",
            "approvals.get",
            "approvals.close",
            "threads.load",
            "threads.append",
            "decide",
            "approvals.resume",
        )
    ),
    # functions/api.py: launch and fork (create + start), get/events/views (load), list (the status index),
    # pause/cancel/messages (append; messages and resume start an execution), cancel ends a wait
    # (TokenWaits.cancel_wait: approvals.get/close + SendTaskFailure), responses (core.services.approvals.decide with
    # tokens=rt.sfn). It never reads the secret: the authorizer checks the key, and it makes no links.
    "ApiFunction": Uses(
        (
            "threads.create",
            "threads.load",
            "threads.append",
            "threads.list",
            "executions.start",
            "approvals.get",
            "approvals.close",
            "waits.cancel_wait",
            "decide",
        )
    ),
    # functions/authorizer.py: the API keys (api_key, api_keys) from their secret.
    "AuthorizerFunction": Uses(("secrets",)),
    # functions/record_end.py -> core.services.control.record_failure: load, append one small failed event (append_one),
    # or, when the thread's events cannot be read, mark_failed on its header;
    # the alert through the notifiers (secret for webhook/Slack, SES for email); send_reply loads the thread and
    # signs with the reply key from the secret.
    "RecordEndFunction": Uses(("threads.load", "threads.append_small", "threads.mark_failed", "secrets", "email")),
    # functions/triggers.py -> core.services.triggers.launch_from -> core.services.control.launch: create (a redelivery
    # loads the
    # existing thread instead), start; webhook signing secrets. Its role also serves the SQS event source mapping
    # (TriggerQueue) and the on-failure destination of async invokes (TriggerDeadLetterQueue).
    "TriggersFunction": Uses(
        ("threads.create", "threads.load", "executions.start", "secrets"),
        platform=frozenset(
            {
                ("sqs:ReceiveMessage", "TriggerQueue"),
                ("sqs:DeleteMessage", "TriggerQueue"),
                ("sqs:GetQueueAttributes", "TriggerQueue"),
                ("sqs:SendMessage", "TriggerDeadLetterQueue"),
            }
        ),
    ),
    # functions/launch.py -> core.services.control.launch: create (a retried launch loads the existing thread
    # instead); it starts no execution (the calling workflow does, with startExecution.sync:2) and reads no key.
    "LaunchFunction": Uses(("threads.create", "threads.load")),
}


def secrets_of(function: str) -> set[str]:
    """The secret resources holding the keys ``function`` reads, by the variables its environment names them with."""
    from functions._wiring import SECRET_SOURCES  # noqa: PLC0415

    env = template().resources[function]["Properties"].get("Environment", {}).get("Variables", {})
    needed = {variable for variable, keys in SECRET_SOURCES.items() if set(keys) & SECRET_KEYS[function]}
    missing = needed - set(env)
    assert not missing, f"{function} reads keys of {sorted(missing)}, which its environment does not name"
    return {str(env[variable]["Ref"]) for variable in needed}


def expected(function: str) -> set[tuple[str, str]]:
    uses = FUNCTIONS[function]
    grants = {grant for name in uses.capabilities for call in capability_calls(name) for grant in call.grants}
    if ("secretsmanager:GetSecretValue", SECRET) in grants:
        grants.remove(("secretsmanager:GetSecretValue", SECRET))
        grants |= {("secretsmanager:GetSecretValue", secret) for secret in secrets_of(function)}
    return grants | set(uses.platform)


# --- the template ------------------------------------------------------------------------------------------------


@cache
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def resource_name(value: Any) -> str:
    """A policy resource as a logical id (``ThreadsTable``), a path under one (``PayloadBucket/*``) or a pattern."""
    if value == "*":
        return ANY
    if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::Split" in value and "BedrockModelIds" in repr(value):
        return "BedrockModelIds"  # foundation-model/<id> and inference-profile/<id> for each listed id
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        text = re.sub(r"\$\{(\w+)\.Arn\}", r"\1", value["Fn::Sub"])
        for logical_id, resource in template().resources.items():
            props = resource.get("Properties", {})
            name = props.get("Name") or props.get("QueueName")
            if isinstance(name, dict) and text.endswith(f":{name.get('Fn::Sub')}"):
                return logical_id
        text = text.removeprefix("arn:${AWS::Partition}:")
        return re.sub(r":+", ":", text.replace("${AWS::Region}", "").replace("${AWS::AccountId}", ""))
    raise AssertionError(f"a policy resource this test cannot name: {value!r}")


def granted(function: str) -> set[tuple[str, str]]:
    """(action, resource) pairs the function's inline policy statements allow."""
    props = template().resources[function]["Properties"]
    grants: set[tuple[str, str]] = set()
    for policy in props.get("Policies", []):
        assert isinstance(policy, dict), f"{function}: only inline statements are checked here, not {policy!r}"
        assert set(policy) == {"Statement"}, f"{function}: only inline statements are checked here, not {policy!r}"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow", statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resource = statement["Resource"]
            resources = resource if isinstance(resource, list) else [resource]
            grants |= {(action, resource_name(resource)) for action in actions for resource in resources}
    return grants


def _describe(grants: set[tuple[str, str]]) -> str:
    return "\n".join(f"    {action} on {resource}" for action, resource in sorted(grants)) or "    (none)"


# --- the tests ---------------------------------------------------------------------------------------------------


def test_every_key_is_read_by_some_function_and_every_function_reads_only_its_keys() -> None:
    """Issue 13: the table of keys matches the secrets' groups, and a function given no key reads no secret."""
    from functions._wiring import SECRET_SOURCES, Secrets  # noqa: PLC0415

    grouped = {key for keys in SECRET_SOURCES.values() for key in keys}
    assert grouped == set(Secrets.model_fields)
    assert set().union(*SECRET_KEYS.values()) == grouped
    assert set(SECRET_KEYS) == set(FUNCTIONS)
    for function, keys in SECRET_KEYS.items():
        assert ("secrets" in FUNCTIONS[function].capabilities) == bool(keys), function


CONDITION_CHECK = ("dynamodb:ConditionCheckItem", TABLE)
PENDING: dict[str, set[tuple[str, str]]] = {}
"""Grants template.yaml has that no code calls yet, while the template waits to be edited (empty: it matches)."""


def test_the_table_covers_every_function_of_the_template() -> None:
    functions = {name for name, r in template().resources.items() if r.get("Type") == "AWS::Serverless::Function"}
    assert set(FUNCTIONS) == functions


def test_every_aws_call_in_the_code_belongs_to_a_capability() -> None:
    covered = {owner for name in CAPABILITIES for entry in CAPABILITIES[name].entries for owner in reached(entry)}
    stray = {f"{call.owner}: {call.receiver}.{call.operation}()" for o, c in aws_calls().items() for call in c} - {
        f"{call.owner}: {call.receiver}.{call.operation}()" for owner in covered for call in aws_calls().get(owner, ())
    }
    assert not stray, "AWS calls no capability accounts for (add one, and to the functions that reach it):\n" + (
        "\n".join(sorted(stray))
    )


def test_the_call_inventory_is_what_the_store_and_adapters_do() -> None:
    """A spot check of layer 1: the thread store's writes are transactions of Puts (create) and Update+Puts."""
    assert {call.operation for call in capability_calls("threads.load")} == {"query", "get_object"}
    create = {grant for call in capability_calls("threads.create") for grant in call.grants}
    assert create == {("dynamodb:PutItem", TABLE), ("s3:PutObject", OBJECTS)}
    append = {grant for call in capability_calls("threads.append") for grant in call.grants}
    assert append == {
        ("dynamodb:Query", TABLE),
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:UpdateItem", TABLE),
        ("s3:GetObject", OBJECTS),
        ("s3:PutObject", OBJECTS),
    }
    assert {grant for call in capability_calls("threads.list") for grant in call.grants} == {("dynamodb:Query", INDEX)}


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_function_is_granted_exactly_what_its_code_calls(function: str) -> None:
    want, have = expected(function), granted(function)
    pending = PENDING.get(function, set())
    extra, missing, done = have - want - pending, want - have, pending - have
    assert (extra, missing, done) == (set(), set(), set()), (
        f"{function}'s policy in template.yaml differs from what its code calls.\n"
        f"  granted but never called (remove from template.yaml):\n{_describe(extra)}\n"
        f"  called but not granted (add to template.yaml):\n{_describe(missing)}\n"
        f"  no longer granted, as it should be (delete from PENDING here):\n{_describe(done)}"
    )


def test_every_library_call_is_still_in_the_code() -> None:
    found = {(call.owner, call.operation) for calls in aws_calls().values() for call in calls}
    for (path, qualname, _), operation in LIBRARY_CALLS.items():
        assert (f"{path}:{qualname}", operation) in found, f"{path}:{qualname} no longer makes the call {operation}"
