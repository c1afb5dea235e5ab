"""Issue 13, least privilege for secrets: each function reads only the secrets template.yaml gives it (moto).

The template's environment of each function is applied as Lambda would (``!Ref <Secret>`` -> the secret's ARN), the
secrets are created in moto with every key in its own place and one key misplaced, and ``Secrets.load`` is watched
at the botocore seam: it must read exactly the function's own secrets, each only for its own keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions._wiring import SECRET_SOURCES, Secrets, Settings
from infra.local.template import load_template

pytestmark = pytest.mark.usefixtures("no_local_stack_in_module")  # each brings its own mock_aws()

ROOT = Path(__file__).resolve().parents[2]
VALUES = {
    "ApiKeysSecret": {"api_key": "legacy-key-0123456789", "api_keys": {"ops": {"key": "o" * 20, "scopes": ["read"]}}},
    "ModelKeysSecret": {"openai_api_key": "sk-openai", "anthropic_api_key": "sk-ant"},
    "LinkKeySecret": {"link_signing_key": "link-key"},
    "ReplyKeySecret": {"reply_signing_key": "reply-key"},
    "WebhookSecrets": {"github_webhook_secret": "gh", "slack_signing_secret": "sl", "stepfold_webhook_secret": "sf"},
    # misplaced: a model key pasted into the notifiers' secret must not reach request_human or record_end
    "NotifierSecrets": {
        "notify_webhook_secret": "nw",
        "notify_slack_url": "https://hooks.slack.com/services/T/B/x",
        "openai_api_key": "sk-misplaced",
    },
}
READS = {
    "AuthorizerFunction": ({"ApiKeysSecret"}, {"api_key", "api_keys"}),
    "StepFunction": (
        {"ModelKeysSecret", "ReplyKeySecret"},
        {"openai_api_key", "anthropic_api_key", "reply_signing_key"},
    ),
    "RequestHumanFunction": (
        {"LinkKeySecret", "NotifierSecrets"},
        {"link_signing_key", "notify_webhook_secret", "notify_slack_url"},
    ),
    "ApprovalsFunction": ({"LinkKeySecret"}, {"link_signing_key"}),
    "RecordEndFunction": (
        {"NotifierSecrets", "ReplyKeySecret"},
        {"notify_webhook_secret", "notify_slack_url", "reply_signing_key"},
    ),
    "TriggersFunction": (
        {"WebhookSecrets"},
        {"github_webhook_secret", "slack_signing_secret", "stepfold_webhook_secret"},
    ),
    "ApiFunction": (set(), set()),
}
"""Per function: the secrets it reads and the keys it ends up with (issue 13's split)."""


@pytest.fixture
def secretsmanager() -> Iterator[tuple[Any, dict[str, str], list[str]]]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arns = {
            name: client.create_secret(Name=f"stepfold-{name}", SecretString=json.dumps(value))["ARN"]
            for name, value in VALUES.items()
        }
        read: list[str] = []
        client.meta.events.register(
            "provide-client-params.secrets-manager.GetSecretValue", lambda params, **_: read.append(params["SecretId"])
        )
        yield client, arns, read


@pytest.mark.parametrize("function", sorted(READS))
def test_each_function_reads_only_its_own_secrets_and_only_their_keys(
    function: str, secretsmanager: tuple[Any, dict[str, str], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, arns, read = secretsmanager
    template = load_template(ROOT / "template.yaml")
    env = template.resources[function]["Properties"].get("Environment", {}).get("Variables", {})
    given = {variable: arns[value["Ref"]] for variable, value in env.items() if variable in SECRET_SOURCES}
    settings = Settings.from_env(given)
    with caplog.at_level(logging.WARNING, logger="stepfold"):
        keys = Secrets.load(settings, client if settings.secret_sources() else None, env={})
    secrets, fields = READS[function]
    by_arn = {arn: name for name, arn in arns.items()}
    assert {by_arn[arn] for arn in read} == secrets
    assert len(read) == len(secrets)  # each read once
    held = {name for name in Secrets.model_fields if getattr(keys, name)} - {"link_signing_key"}
    assert held == fields - {"link_signing_key"}
    if "link_signing_key" in fields:
        assert keys.link_signing_key == "link-key"
    assert keys.openai_api_key != "sk-misplaced"
    if "NotifierSecrets" in secrets:
        assert "openai_api_key" in caplog.text  # the misplaced key is named, its value never
        assert "STEPFOLD_MODEL_KEYS_SECRET_ARN" in caplog.text
        assert "sk-misplaced" not in caplog.text


def test_the_authorizer_gets_its_named_keys_from_the_secret(
    secretsmanager: tuple[Any, dict[str, str], list[str]],
) -> None:
    client, arns, _ = secretsmanager
    settings = Settings.from_env({"STEPFOLD_API_KEYS_SECRET_ARN": arns["ApiKeysSecret"]})
    principals = Secrets.load(settings, client, env={}).principals()
    assert {name: entry.scopes for name, entry in principals.items()} == {
        "ops": ("read",),
        "api-key": ("read", "operate", "approve"),
    }
