"""Issue 13, least privilege for secrets: each function reads only the secrets template.yaml gives it (moto).

The template's environment of each function is applied as Lambda would (``!Ref <Secret>`` -> the secret's ARN), the
secrets are created in moto with every key in its own place and one key misplaced, and ``Secrets.load`` is watched
at the botocore seam: it must read exactly the function's own secrets, each only for its own keys.

Issue 15: the secrets are read through Powertools Parameters, which keeps them for
``STEPFOLD_SECRETS_MAX_AGE_SECONDS``; a rotated secret reaches a warm runtime after that, without a cold start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Self

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from agents import AGENTS
from core.adapters.llm import LLMRequest, ToolSpec
from core.services.notify import Alert, RecordingNotifier
from functions._boundary import DependencyUnavailable, classify
from functions._wiring import SECRET_SOURCES, DeferredNotifier, Secrets, SecretsLoader, Settings, build_runtime
from infra.local.template import load_template
from tests.functional.conftest import Shared
from tests.provider_server import ProviderServer

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


@contextlib.contextmanager
def secrets(client: Any, values: dict[str, str]) -> Iterator[dict[str, str]]:
    """Secrets (name -> SecretString) under names of their own in the session's moto (the shared stack's), deleted
    afterwards; yields name -> ARN."""
    prefix = f"stepfold-{uuid.uuid4().hex[:12]}"
    arns = {
        name: client.create_secret(Name=f"{prefix}-{name}", SecretString=value)["ARN"] for name, value in values.items()
    }
    try:
        yield arns
    finally:
        for arn in arns.values():
            client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


@pytest.fixture
def secretsmanager(shared: Shared) -> Iterator[tuple[Any, dict[str, str], list[str]]]:
    shared.running()
    client = boto3.client("secretsmanager", region_name="us-east-1")
    with secrets(client, {name: json.dumps(value) for name, value in VALUES.items()}) as arns:
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


# --- issue 15: Powertools Parameters reads the secrets, keeps them for the max age, then reads them again ----------


class _Clock(datetime):
    """Powertools Parameters' clock: its cache compares ``datetime.now()`` with each entry's expiry."""

    ahead = timedelta(0)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls.fromtimestamp(time.time() + cls.ahead.total_seconds(), tz)


@pytest.fixture
def powertools_clock(monkeypatch: pytest.MonkeyPatch) -> type[_Clock]:
    clock = type("PowertoolsClock", (_Clock,), {"ahead": timedelta(0)})
    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.base.datetime", clock)
    return clock


REQUEST = LLMRequest(
    model="openai:gpt-4o-mini",
    system="",
    context="<user_input>hello</user_input>",
    tools=(ToolSpec("done_for_now", "Answer.", {"type": "object", "properties": {}}),),
    max_output_tokens=100,
)


def test_a_rotated_model_key_reaches_a_warm_runtime_after_the_max_age(
    secretsmanager: tuple[Any, dict[str, str], list[str]],
    powertools_clock: type[_Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, arns, _ = secretsmanager
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with ProviderServer() as server:
        settings = Settings.from_env(
            {
                "STEPFOLD_MODEL_KEYS_SECRET_ARN": arns["ModelKeysSecret"],
                "STEPFOLD_SECRETS_MAX_AGE_SECONDS": "3600",
                "STEPFOLD_MODEL": "openai:gpt-4o-mini",
                "OPENAI_BASE_URL": server.openai.base_url,
            }
        )
        rt = build_runtime(settings)  # one warm container from here on
        agent = AGENTS["calculator"]
        rt.llm_for(agent).complete(REQUEST)
        rotated = {"openai_api_key": "sk-rotated", "anthropic_api_key": "sk-ant"}
        client.put_secret_value(SecretId=arns["ModelKeysSecret"], SecretString=json.dumps(rotated))
        powertools_clock.ahead = timedelta(minutes=30)
        rt.llm_for(agent).complete(REQUEST)  # within the max age: the key it read, no read of the secret
        powertools_clock.ahead = timedelta(minutes=61)
        rt.llm_for(agent).complete(REQUEST)  # past it: read again, and the model is built with the new key
        sent = [request.headers["authorization"] for request in server.openai.requests]
        rt.use_provider_config(None)  # closes the model's connection pool
    assert sent == ["Bearer sk-openai", "Bearer sk-openai", "Bearer sk-rotated"]
    assert rt.secrets.openai_api_key == "sk-rotated"


def test_an_unchanged_secret_read_again_keeps_the_keys_and_warns_once(
    secretsmanager: tuple[Any, dict[str, str], list[str]],
    powertools_clock: type[_Clock],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, arns, read = secretsmanager
    settings = Settings.from_env({"STEPFOLD_NOTIFIER_SECRETS_ARN": arns["NotifierSecrets"]})
    loader = SecretsLoader(settings, lambda: client, env={})
    with caplog.at_level(logging.WARNING, logger="stepfold"):
        first = loader()
        assert loader() is first  # from Powertools' cache: no read
        powertools_clock.ahead = timedelta(seconds=settings.secrets_max_age_seconds + 1)
        assert loader() is first  # read again, found unchanged: the same keys, so nothing that holds them rebuilds
    assert len(read) == 2
    assert caplog.text.count("may not supply") == 1  # the misplaced key is warned about once, not at every read


def test_the_notifier_channels_are_built_anew_with_rotated_keys() -> None:
    keys: list[object] = [object()]
    built: list[object] = []

    def build() -> RecordingNotifier:
        built.append(keys[-1])
        return RecordingNotifier()

    notifier = DeferredNotifier(build, keys=lambda: keys[-1])
    notifier.alert(_alert())
    notifier.alert(_alert())
    keys.append(object())  # a rotated secret: SecretsLoader returns other keys
    notifier.alert(_alert())
    assert built == [keys[0], keys[1]]


def _alert() -> Alert:
    return Alert(thread_id="th_1", agent="deploybot", title="failed", detail="StepError", url="https://x/th_1")


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def test_a_throttled_secrets_manager_is_a_retryable_error_not_a_wrapped_one(shared: Shared) -> None:
    """Powertools wraps every read error in GetParameterError; the loader raises the client's own again, so the
    boundary still sees a throttled Secrets Manager (ARCHITECTURE.md "Errors": DependencyUnavailable)."""
    shared.running()
    client = boto3.client("secretsmanager", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
    with secrets(client, {"model-keys": "{}"}) as arns:
        arn = arns["model-keys"]

        def throttled(request: Any, **_: Any) -> AWSResponse:
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return AWSResponse(request.url, 400, {"content-type": "application/x-amz-json-1.1"}, _Body(body))

        client.meta.events.register_first("before-send.secrets-manager.GetSecretValue", throttled)
        settings = Settings.from_env({"STEPFOLD_MODEL_KEYS_SECRET_ARN": arn})
        with pytest.raises(ClientError, match="ThrottlingException") as caught:
            Secrets.load(settings, client, env={})
    assert classify(caught.value) is DependencyUnavailable


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (
            "sk-not-json",
            r"STEPFOLD_MODEL_KEYS_SECRET_ARN names is not JSON \(line 1 column 1\); it must hold an object",
        ),
        ('["sk-in-a-list"]', "STEPFOLD_MODEL_KEYS_SECRET_ARN names holds a JSON list; it must hold an object"),
    ],
)
def test_a_secret_that_is_not_an_object_of_keys_says_so_without_its_value(
    shared: Shared, stored: str, message: str
) -> None:
    shared.running()
    client = boto3.client("secretsmanager", region_name="us-east-1")
    with secrets(client, {"model-keys": stored}) as arns:
        arn = arns["model-keys"]
        settings = Settings.from_env({"STEPFOLD_MODEL_KEYS_SECRET_ARN": arn})
        with pytest.raises(ValueError, match=message) as caught:
            Secrets.load(settings, client, env={})
    assert "sk-" not in str(caught.value)


def test_the_max_age_is_a_checked_setting() -> None:
    assert Settings.from_env({}).secrets_max_age_seconds == 300
    with pytest.raises(ValueError, match=r"STEPFOLD_SECRETS_MAX_AGE_SECONDS\n.*greater than or equal to 1"):
        Settings.from_env({"STEPFOLD_SECRETS_MAX_AGE_SECONDS": "0"})


def test_no_handler_imports_powertools_parameters_until_it_reads_a_secret() -> None:
    """Cold start: the parameters utility is imported at the first read of a Secrets Manager secret, never by a
    handler's import or by keys from the environment (the local stack's)."""
    code = (
        "import sys\n"
        "import functions.step, functions.authorizer, functions.approvals, functions.request_human\n"
        "import functions.record_end, functions.triggers, functions.api\n"
        "from functions._wiring import Secrets, Settings\n"
        "Secrets.load(Settings(), None, env={'STEPFOLD_API_KEY': 'k' * 20})\n"
        "print('aws_lambda_powertools.utilities.parameters' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
