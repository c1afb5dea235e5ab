"""template.yaml: lint-clean, least privilege, and in step with the code it deploys."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra._dists import closure

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

CONTRACT_HANDLERS = {
    "StepFunction": "functions.step.handler",
    "RequestHumanFunction": "functions.request_human.handler",
    "ApiFunction": "functions.api.handler",
    "ApprovalsFunction": "functions.approvals.handler",
    "AuthorizerFunction": "functions.authorizer.handler",
    "TriggersFunction": "functions.triggers.handler",
    "RecordEndFunction": "functions.record_end.handler",
    "LaunchFunction": "functions.launch.handler",
}
CONTRACT_ENV = {
    "STEPFOLD_TABLE",
    "STEPFOLD_BUCKET",
    "STEPFOLD_MODEL",
    "STEPFOLD_APPROVAL_TIMEOUT_SECONDS",
    "STEPFOLD_PROMPT_VERSIONS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}
RUNTIME_PROVIDED = {"boto3", "botocore"}
"""The Lambda Python runtime ships these; bundling them only makes the package bigger."""


def _template() -> Any:
    from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]  # noqa: PLC0415  (tolerates !Ref & co)

    return cfn_yaml.load(str(TEMPLATE))


def _resources(kind: str) -> dict[str, Any]:
    return {name: res for name, res in _template()["Resources"].items() if res["Type"] == kind}


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    """The inline policy statements of a function (SAM policy templates are not inline statements)."""
    found: list[dict[str, Any]] = []
    for policy in function["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            found.extend(policy["Statement"])
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _iam_actions() -> dict[str, Any]:
    """cfn-lint's copy of the Service Authorization Reference: service prefix -> actions -> resource types."""
    text = files("cfnlint.data.AdditionalSpecs").joinpath("Policies.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# --- lint -----------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), "template.yaml"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# --- functions ------------------------------------------------------------------------------------


def test_functions_are_the_contracts() -> None:
    functions = _resources("AWS::Serverless::Function")
    assert {name: fn["Properties"]["Handler"] for name, fn in functions.items()} == CONTRACT_HANDLERS


@pytest.mark.parametrize("name", sorted(CONTRACT_HANDLERS))
def test_handler_exists(name: str) -> None:
    module, _, attribute = CONTRACT_HANDLERS[name].rpartition(".")
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not written yet (template.yaml points {name} at it)")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            top_level.add(node.name)
        elif isinstance(node, ast.Assign):
            top_level.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top_level.add(node.target.id)
    assert attribute in top_level, f"{path.relative_to(ROOT)} defines no top-level {attribute!r}"


def test_every_function_gets_the_contract_environment() -> None:
    template = _template()
    assert set(template["Globals"]["Function"]["Environment"]["Variables"]) == CONTRACT_ENV
    human_env = template["Resources"]["RequestHumanFunction"]["Properties"]["Environment"]["Variables"]
    assert "${HttpApi}" in human_env["STEPFOLD_PUBLIC_URL"]["Fn::Sub"]


def test_api_function_knows_the_machine_by_name() -> None:
    """Not by Ref: that would close a cycle through HttpApi (.ci/sam.sh lints the transformed template)."""
    resources = _template()["Resources"]
    name = resources["AgentLoop"]["Properties"]["Name"]["Fn::Sub"]
    arn = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]["STEPFOLD_STATE_MACHINE_ARN"]
    assert arn == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:{name}"
    }
    (start,) = [s for s in _statements(resources["ApiFunction"]) if s["Action"] == "states:StartExecution"]
    assert start["Resource"] == arn


def test_functions_are_built_by_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "# --- SAM build targets (infra) ---" in makefile
    for name, function in _resources("AWS::Serverless::Function").items():
        assert function.get("Metadata", {}).get("BuildMethod") == "makefile", name
        assert re.search(rf"^[^#\n]*\bbuild-{name}\b[^\n]*:", makefile, re.MULTILINE), f"no build-{name} target"


def test_no_wildcard_actions_in_function_policies() -> None:
    for name, function in _resources("AWS::Serverless::Function").items():
        for statement in _statements(function):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{name} {statement.get('Sid')}: wildcard action {action}"


def test_policy_actions_exist_and_star_only_where_iam_allows_nothing_else() -> None:
    iam = _iam_actions()
    for name, function in _resources("AWS::Serverless::Function").items():
        for statement in _statements(function):
            actions = [action.lower() for action in _as_list(statement["Action"])]
            for action in actions:
                service, _, verb = action.partition(":")
                assert verb in iam.get(service, {}).get("Actions", {}), f"{name}: {action} is not an IAM action"
            if "*" in _as_list(statement["Resource"]):
                scoped = [a for a in actions if iam[a.split(":")[0]]["Actions"][a.split(":")[1]].get("Resources")]
                assert scoped == [], f"{name} {statement.get('Sid')}: Resource '*' for actions that can be scoped"


def test_state_machine_invokes_exactly_its_three_functions_and_starts_only_itself() -> None:
    machine = _template()["Resources"]["AgentLoop"]["Properties"]
    assert machine["Type"] == "STANDARD"
    invoked = [p["LambdaInvokePolicy"]["FunctionName"] for p in machine["Policies"] if "LambdaInvokePolicy" in p]
    assert invoked == [{"Ref": "StepFunction"}, {"Ref": "RequestHumanFunction"}, {"Ref": "RecordEndFunction"}]
    (starts,) = [p["StepFunctionsExecutionPolicy"] for p in machine["Policies"] if "StepFunctionsExecutionPolicy" in p]
    assert starts["StateMachineName"] == machine["Name"], "ContinueAsNew starts this machine and no other"
    (follows,) = [p["Statement"] for p in machine["Policies"] if "Statement" in p]
    assert _sync_grants(follows) == SYNC_GRANTS, "ContinueAsNew waits for the next execution (.sync:2)"
    (bursts,) = [p["Fn::If"] for p in machine["Policies"] if "Fn::If" in p]
    condition, express, standard = bursts
    assert condition == "ExpressLoop", "bursts only in express mode"
    assert standard == {"Ref": "AWS::NoValue"}
    assert _sync_grants(express["Statement"]) == {
        ("states:StartExecution", repr({"Ref": "AgentBurst"})),
        ("states:DescribeExecution", "express:${AWS::StackName}-agent-burst:*"),
        ("states:StopExecution", "express:${AWS::StackName}-agent-burst:*"),
    }
    assert len(machine["Policies"]) == 6


def test_the_burst_invokes_only_the_step_function() -> None:
    machine = _template()["Resources"]["AgentBurst"]["Properties"]
    assert machine["Type"] == "EXPRESS"
    assert machine["Policies"] == [{"LambdaInvokePolicy": {"FunctionName": {"Ref": "StepFunction"}}}]


SYNC_GRANTS = {
    ("states:DescribeExecution", "execution:${AWS::StackName}-agent-loop:*"),
    ("states:StopExecution", "execution:${AWS::StackName}-agent-loop:*"),
    ("events:PutTargets", "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"),
    ("events:PutRule", "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"),
    ("events:DescribeRule", "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"),
}
"""What ``startExecution.sync:2`` on the agent loop needs besides StartExecution (AWS, "IAM policies for AWS Step
Functions", Synchronous): follow and stop its executions, and the rule Step Functions manages for it."""


def _sync_grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    grants = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        resource = statement["Resource"]
        sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
        where = sub.split("${AWS::AccountId}:", 1)[-1] if isinstance(sub, str) else ""
        for action in _as_list(statement["Action"]):
            grants.add((action, where or repr(resource)))
    return grants


def test_the_example_workflow_may_run_the_agent_loop_and_its_launch_function_only() -> None:
    """Least privilege for a parent of agents: invoke the launch function, start the agent loop, follow its
    executions (.sync:2), and nothing else."""
    machine = _template()["Resources"]["IssueWorkflow"]["Properties"]
    assert machine["Type"] == "STANDARD"
    invoked = [p["LambdaInvokePolicy"]["FunctionName"] for p in machine["Policies"] if "LambdaInvokePolicy" in p]
    assert invoked == [{"Ref": "LaunchFunction"}]
    (statements,) = [p["Statement"] for p in machine["Policies"] if "Statement" in p]
    grants = _sync_grants(statements)
    assert grants == SYNC_GRANTS | {("states:StartExecution", repr({"Ref": "AgentLoop"}))}
    assert len(machine["Policies"]) == 2
    assert machine["DefinitionSubstitutions"]["AgentLoopArn"] == {"Ref": "AgentLoop"}


def test_every_failed_timed_out_or_aborted_execution_reaches_the_record_end_function() -> None:
    resources = _template()["Resources"]
    (rule,) = resources["RecordEndFunction"]["Properties"]["Events"].values()
    assert rule["Type"] == "EventBridgeRule"
    pattern = rule["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    name = resources["AgentLoop"]["Properties"]["Name"]["Fn::Sub"]
    assert pattern["detail"]["stateMachineArn"][0]["Fn::Sub"].endswith(f":stateMachine:{name}")


# --- state ----------------------------------------------------------------------------------------


def test_table_is_on_demand_with_pitr_ttl_and_sse() -> None:
    (table,) = _resources("AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_table_keys_match_the_store() -> None:
    from core.adapters.store.dynamodb import table_key_schema  # noqa: PLC0415

    props = _template()["Resources"]["ThreadsTable"]["Properties"]
    expected = table_key_schema()
    assert props["KeySchema"] == expected["KeySchema"]
    assert [a for a in props["AttributeDefinitions"] if a["AttributeName"] in {"PK", "SK"}] == (
        expected["AttributeDefinitions"]
    )
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "status-updated"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["status", "updated_at"]


def test_bucket_blocks_public_access_is_encrypted_and_requires_tls() -> None:
    props = _template()["Resources"]["PayloadBucket"]["Properties"]
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    (policy,) = _resources("AWS::S3::BucketPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_the_signing_keys_and_the_api_key_are_generated_each_in_its_own_secret() -> None:
    resources = _template()["Resources"]
    generated = {
        name: res["Properties"]["GenerateSecretString"]["GenerateStringKey"]
        for name, res in resources.items()
        if res["Type"] == "AWS::SecretsManager::Secret" and "GenerateSecretString" in res["Properties"]
    }
    assert generated == {
        "LinkKeySecret": "link_signing_key",
        "ReplyKeySecret": "reply_signing_key",
        "ApiKeysSecret": "api_key",
    }


def test_every_secret_of_the_code_has_a_secret_resource_and_no_function_reads_one_it_is_not_given() -> None:
    """Issue 13 (least privilege for secrets): a function's environment names the secrets it may read (by the
    variables of ``SECRET_SOURCES``), its role may read exactly those, and no secret is shared by every function."""
    from functions._wiring import SECRET_SOURCES  # noqa: PLC0415

    template = _template()
    assert not {v for v in template["Globals"]["Function"]["Environment"]["Variables"] if "SECRET" in v}
    secrets = set(_resources("AWS::SecretsManager::Secret"))
    for name, function in _resources("AWS::Serverless::Function").items():
        env = function["Properties"].get("Environment", {}).get("Variables", {})
        named = {v["Ref"] for k, v in env.items() if k in SECRET_SOURCES}
        assert not {k for k in env if "SECRET" in k} - set(SECRET_SOURCES), name
        readable = {
            resource["Ref"]
            for statement in _statements(function)
            if statement["Action"] == "secretsmanager:GetSecretValue"
            for resource in _as_list(statement["Resource"])
        }
        assert named == readable, f"{name}: its environment names {named}, its role may read {readable}"
        assert readable <= secrets
    assert len(secrets) == len(SECRET_SOURCES)


def test_the_step_may_invoke_only_the_listed_bedrock_models() -> None:
    """Issue 13: ``bedrock:InvokeModel`` is scoped to the ids of ``BedrockModelIds``, not ``foundation-model/*``."""
    template = _template()
    assert template["Parameters"]["BedrockModelIds"]["Type"] == "CommaDelimitedList"
    (statement,) = [
        s for s in _statements(template["Resources"]["StepFunction"]) if s["Action"] == "bedrock:InvokeModel"
    ]
    text = json.dumps(statement["Resource"])
    assert "BedrockModelIds" in text
    assert "foundation-model/*" not in text
    assert "inference-profile/*" not in text


def test_the_slack_url_is_no_plain_parameter() -> None:
    """Issue 13: a Slack incoming webhook URL is a credential: it lives in NotifierSecrets, not in a parameter or
    an environment variable anyone with lambda:GetFunctionConfiguration can read."""
    template = _template()
    assert "NotifySlackUrl" not in template["Parameters"]
    for name, function in _resources("AWS::Serverless::Function").items():
        env = function["Properties"].get("Environment", {}).get("Variables", {})
        assert "STEPFOLD_NOTIFY_SLACK_URL" not in env, name


def test_outputs() -> None:
    assert set(_template()["Outputs"]) == {
        "ApiUrl",
        "StateMachineArn",
        "IssueWorkflowArn",
        "TableName",
        "BucketName",
        "ApiKeysSecretArn",
        "ModelKeysSecretArn",
        "WebhookSecretsArn",
        "NotifierSecretsArn",
    }


# --- the package's dependencies ---------------------------------------------------------------------


def _pins() -> dict[str, Requirement]:
    lines = (ROOT / "requirements-lambda.txt").read_text(encoding="utf-8").splitlines()
    return {str(canonicalize_name(r.name)): r for r in map(Requirement, (ln for ln in lines if ln and ln[0] != "#"))}


def test_lambda_requirements_follow_pyproject() -> None:
    """pyproject's runtime dependencies, and the tracer's SDK (a dev extra: the tests use it; in AWS the Powertools
    layer has it, and LAMBDA_POWERTOOLS=bundle ships this pin)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted: dict[str, Requirement] = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    dev = {canonicalize_name(r.name): r for r in map(Requirement, project["optional-dependencies"]["dev"])}
    wanted["aws-xray-sdk"] = dev[canonicalize_name("aws-xray-sdk")]
    pinned = _pins()

    assert set(pinned) == set(wanted) - RUNTIME_PROVIDED
    for name, requirement in pinned.items():
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: pin an exact version"
        assert wanted[name].specifier.contains(spec.version), f"{name} {spec.version} breaks {wanted[name]}"
        assert requirement.extras == wanted[name].extras, f"{name}: extras differ from pyproject.toml"


# --- one package per function ------------------------------------------------------------------------------------

LAMBDA_PROVIDED_MODULES = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}
"""Top-level modules the Lambda Python runtime has itself (boto3 and its dependencies)."""

_MODULES_AFTER_IMPORT = """
import importlib, json, sys
importlib.import_module({module!r})
std = set(sys.stdlib_module_names)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} - std)))
"""


def _makefile_list(variable: str) -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (value,) = re.findall(rf"^{variable} :=[ \t]*(.*)$", makefile, re.MULTILINE)
    return set(value.split())


def _makefile_needs() -> dict[str, set[str]]:
    """``LAMBDA_NEEDS_<LogicalId>`` of the Makefile, each with ``LAMBDA_NEEDS_COMMON``, as distribution names."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = dict(re.findall(r"^LAMBDA_NEEDS_(\w+) :=[ \t]*(.*)$", makefile, re.MULTILINE))
    common = set(found.pop("COMMON").split())
    return {name: {canonicalize_name(n) for n in common | set(value.split())} for name, value in found.items()}


def _layer_provides() -> set[str]:
    """What the functions import from AWS's Powertools layer (``LAMBDA_LAYER_PROVIDES``), as distribution names."""
    return {canonicalize_name(n) for n in _makefile_list("LAMBDA_LAYER_PROVIDES")}


def test_every_function_has_a_package_recipe_and_pins_what_it_needs() -> None:
    needs = _makefile_needs()
    assert set(needs) == set(_resources("AWS::Serverless::Function")), "LAMBDA_NEEDS_<LogicalId> per function"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (listed,) = re.findall(r"^LAMBDA_FUNCTIONS := ((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert set(listed.replace("\\\n", " ").split()) == set(needs)
    lines = (ROOT / "requirements-lambda.txt").read_text(encoding="utf-8").splitlines()
    pinned = {canonicalize_name(Requirement(ln).name) for ln in lines if ln and ln[0] != "#"}
    for name, wanted in needs.items():
        assert wanted <= pinned, f"{name} needs {wanted - pinned}, which requirements-lambda.txt does not pin"
    assert _layer_provides() <= pinned, "LAMBDA_POWERTOOLS=bundle installs them from requirements-lambda.txt"
    handlers = dict(re.findall(r"^LAMBDA_HANDLER_(\w+) :=[ \t]*(\S+)$", makefile, re.MULTILINE))
    assert handlers == {name: handler.rpartition(".")[0] for name, handler in CONTRACT_HANDLERS.items()}, (
        "LAMBDA_HANDLER_<LogicalId> is the module of the function's Handler (infra/lambda_package.py walks from it)"
    )


@pytest.mark.parametrize("name", sorted(CONTRACT_HANDLERS))
def test_each_package_holds_what_its_handler_imports(name: str) -> None:
    """Importing the handler (the function's init) loads only modules its package ships or the runtime has."""
    from importlib.metadata import packages_distributions  # noqa: PLC0415

    module = CONTRACT_HANDLERS[name].rsplit(".", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER_IMPORT.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = set(json.loads(done.stdout)) - {"core", "agents", "functions"} - LAMBDA_PROVIDED_MODULES
    shipped = closure(_makefile_needs()[name] | _layer_provides())  # the package and the Powertools layer
    owners = packages_distributions()
    missing = {
        top
        for top in loaded
        if not top.startswith("_") and not {canonicalize_name(d) for d in owners.get(top, [top])} & shipped
    }
    assert missing == set(), f"{name} imports {sorted(missing)}, which its package (LAMBDA_NEEDS_{name}) lacks"


# --- AWS's Powertools layer ---------------------------------------------------------------------------------------

LAYER_PARAMETER = "/aws/service/powertools/python/{arch}/{runtime}/${{PowertoolsVersion}}"


def test_every_function_imports_powertools_from_the_layer_of_the_pinned_version() -> None:
    """One Globals entry gives every function AWS's layer for its runtime and architecture, found by AWS's public
    SSM parameter for the Powertools version the tests run (requirements-lambda.txt), unless PowertoolsVersion is
    ``bundled``; no function replaces it."""
    template = _template()
    function_globals = template["Globals"]["Function"]
    (arch,) = function_globals["Architectures"]
    parameter = LAYER_PARAMETER.format(arch=arch, runtime=function_globals["Runtime"])
    assert function_globals["Layers"] == {
        "Fn::If": [
            "UsePowertoolsLayer",
            [{"Fn::Sub": "{{resolve:ssm:" + parameter + "}}"}],
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert template["Conditions"]["UsePowertoolsLayer"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PowertoolsVersion"}, "bundled"]}]
    }
    (pin,) = _pins()["aws-lambda-powertools"].specifier
    assert template["Parameters"]["PowertoolsVersion"]["Default"] == pin.version
    for name, function in _resources("AWS::Serverless::Function").items():
        assert "Layers" not in function["Properties"], f"{name} would replace the global layer"
        assert "Runtime" not in function["Properties"], f"{name}: the layer is the Globals runtime's"
        assert "Architectures" not in function["Properties"], f"{name}: the layer is the Globals architecture's"


def test_the_layer_carries_what_the_packages_leave_out() -> None:
    """AWS builds the layer as ``pip install aws-lambda-powertools[all]==<version>``: each distribution the packages
    leave to it is Powertools itself or one of its ``all`` extras."""
    from importlib.metadata import requires  # noqa: PLC0415

    extras = {
        canonicalize_name(Requirement(line).name)
        for line in requires("aws-lambda-powertools") or []
        if Requirement(line).marker is not None and Requirement(line).marker.evaluate({"extra": "all"})  # type: ignore[union-attr]
    }
    assert _layer_provides() - {"aws-lambda-powertools"} <= extras
    assert _layer_provides() >= {"aws-lambda-powertools", "pydantic", "aws-xray-sdk"}
    also = {canonicalize_name(n) for n in _makefile_list("LAMBDA_LAYER_ALSO_HAS")}
    assert also <= closure({"aws-lambda-powertools"}) | extras, "removed from the packages only if the layer has it"


def test_every_parameter_is_in_the_readmes_parameter_table() -> None:
    """README "Deploy to AWS" lists what each parameter does: a new parameter without a row is one nobody finds."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Deploy to AWS", 1)[1].split("| parameter | what |", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Za-z]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[2:])))
    assert set(_template()["Parameters"]) - listed == set()


def test_the_step_function_alone_takes_its_memory_from_step_memory_size() -> None:
    functions = _resources("AWS::Serverless::Function")
    sized = {name for name, fn in functions.items() if "MemorySize" in fn["Properties"]}
    assert sized == {"StepFunction"}
    assert functions["StepFunction"]["Properties"]["MemorySize"] == {"Ref": "StepMemorySize"}
    assert _template()["Parameters"]["StepMemorySize"]["MinValue"] == 128
