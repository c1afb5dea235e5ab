"""Settings and clients, built once per container at the first invocation (never at import time)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents import AGENTS, scripted_model
from core.adapters.llm import LLM, ProviderConfig, make_llm
from core.adapters.store.spend_dynamodb import DynamoSpendLedger
from core.kernel.agent import Agent, StepContext
from core.kernel.budget import SpendLedger
from core.kernel.events import Event, utcnow
from core.kernel.prompts import PromptLibrary
from core.kernel.store import ThreadStore
from core.kernel.thread import Thread
from core.services.notify import Alert, MultiNotifier, Notifier, RecordingNotifier

if TYPE_CHECKING:
    import httpx
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    # boto3's client types, from the mypy-boto3-* stubs: a dev dependency, never in the Lambda package
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_stepfunctions import SFNClient

    from core.kernel.mcp import McpServer, McpTools
    from core.services.approvals import Approval, ApprovalStore
    from core.services.replies import Replier, ReplyPolicy, ReplyResult


def _first_agent() -> str:
    """The default of ``STEPFOLD_DEFAULT_AGENT``: the first registered agent (ARCHITECTURE.md "User space")."""
    first = next(iter(AGENTS), None)
    if first is None:
        raise RuntimeError("no agents are registered: add a module defining AGENT to the agents/ package")
    return first


class Settings(BaseModel):
    """Everything a handler needs from its environment, parsed once (template.yaml sets these in AWS)."""

    table: str = Field(default="stepfold-threads", alias="STEPFOLD_TABLE")
    bucket: str = Field(default="stepfold-payloads", alias="STEPFOLD_BUCKET")
    model: str | None = Field(default=None, alias="STEPFOLD_MODEL")
    state_machine_arn: str | None = Field(default=None, alias="STEPFOLD_STATE_MACHINE_ARN")
    approval_timeout_seconds: int = Field(default=86_400, ge=1, alias="STEPFOLD_APPROVAL_TIMEOUT_SECONDS")
    public_url: str = Field(default="http://127.0.0.1:8765", alias="STEPFOLD_PUBLIC_URL")
    secrets_arn: str | None = Field(default=None, alias="STEPFOLD_SECRETS_ARN")
    """One secret that may hold any key (a hand-made stack); template.yaml gives each function only its own
    secrets instead, through the ``*_SECRET*_ARN`` variables of :data:`SECRET_SOURCES`."""
    api_keys_secret_arn: str | None = Field(default=None, alias="STEPFOLD_API_KEYS_SECRET_ARN")
    model_keys_secret_arn: str | None = Field(default=None, alias="STEPFOLD_MODEL_KEYS_SECRET_ARN")
    link_key_secret_arn: str | None = Field(default=None, alias="STEPFOLD_LINK_KEY_SECRET_ARN")
    reply_key_secret_arn: str | None = Field(default=None, alias="STEPFOLD_REPLY_KEY_SECRET_ARN")
    webhook_secrets_arn: str | None = Field(default=None, alias="STEPFOLD_WEBHOOK_SECRETS_ARN")
    notifier_secrets_arn: str | None = Field(default=None, alias="STEPFOLD_NOTIFIER_SECRETS_ARN")
    secrets_max_age_seconds: int = Field(default=300, ge=1, le=86_400, alias="STEPFOLD_SECRETS_MAX_AGE_SECONDS")
    """How long a warm container uses what it read from Secrets Manager before reading it again (Powertools
    Parameters' cache, :class:`SecretsLoader`): a rotated secret reaches every container within this, without a
    cold start. Powertools' own ``POWERTOOLS_PARAMETERS_MAX_AGE`` is not read."""
    offload_bytes: int = Field(default=32_000, ge=1_000, le=350_000, alias="STEPFOLD_OFFLOAD_BYTES")
    openai_base_url: str = Field(default="https://api.openai.com/v1", alias="OPENAI_BASE_URL")
    anthropic_base_url: str = Field(default="https://api.anthropic.com", alias="ANTHROPIC_BASE_URL")
    model_timeout_seconds: float = Field(default=60.0, gt=0, le=90, alias="STEPFOLD_MODEL_TIMEOUT_SECONDS")
    """How long one model request may take (the read timeout); with the step's other work it must fit the step
    function's Lambda timeout (120 s in template.yaml), hence the cap."""
    mcp_timeout_seconds: float = Field(default=20.0, gt=0, le=30, alias="STEPFOLD_MCP_TIMEOUT_SECONDS")
    """How long one request to an MCP server may take (ARCHITECTURE.md "MCP tools"); with the model's it must fit the
    step function's Lambda timeout, hence the cap."""
    mcp_list_max_age_seconds: float = Field(default=300.0, ge=0, le=86_400, alias="STEPFOLD_MCP_LIST_MAX_AGE_SECONDS")
    """How long a container uses an MCP server's tool list for new threads (and to notice a change for old ones)
    before listing again. A thread always keeps the list it pinned."""
    default_agent: str = Field(default_factory=_first_agent, min_length=1, alias="STEPFOLD_DEFAULT_AGENT")
    """The agent ``POST /thread`` (the reference server's launch) starts; unset: the first registered one (the
    agents package's modules in name order, ARCHITECTURE.md "User space")."""
    notify_webhook_url: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_WEBHOOK_URL")
    notify_slack_url: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_SLACK_URL")
    notify_email_from: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_EMAIL_FROM")
    notify_email_to: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_EMAIL_TO")
    reply_callback_hosts: tuple[str, ...] = Field(default=(), alias="STEPFOLD_REPLY_CALLBACK_HOSTS")
    """Hosts a triggered thread's answer may be POSTed to (``shop.example.com,*.example.org``); empty: any public
    https host. Slack replies always go to Slack's own hosts only (:class:`core.services.replies.ReplyPolicy`)."""
    reply_allow_loopback: bool = Field(default=False, alias="STEPFOLD_ALLOW_LOOPBACK_CALLBACKS")
    """Let replies go to this machine (http or https): the local stack and tests only, never in AWS. The same
    switch lets functions/triggers.py accept such callback URLs when a delivery arrives."""
    prompt_versions: dict[str, int] = Field(default_factory=dict, alias="STEPFOLD_PROMPT_VERSIONS")
    """Prompt version per agent for NEW threads (``support=2,billing=1``); a thread keeps the version it was
    launched with. Empty: each agent's own. Rollout and rollback are a change of this one parameter."""

    @field_validator("prompt_versions", mode="before")
    @classmethod
    def _prompt_versions(cls, value: object) -> object:
        return parse_prompt_versions(value) if isinstance(value, str) else value

    @field_validator("reply_callback_hosts", mode="before")
    @classmethod
    def _reply_hosts(cls, value: object) -> object:
        """A comma-separated list; each entry a host name (``*.`` allowed as its first label), lowercased."""
        if not isinstance(value, str):
            return value
        hosts = tuple(h.strip().lower().rstrip(".") for h in value.split(",") if h.strip())
        for host in hosts:
            name = host.removeprefix("*.")
            if not name or "*" in name or "/" in host or ":" in host or "." not in name:
                raise ValueError(
                    f"STEPFOLD_REPLY_CALLBACK_HOSTS entry {host!r} must be a host name like shop.example.com or "
                    "*.example.com (no scheme, port or path)"
                )
        return hosts

    def reply_policy(self) -> ReplyPolicy:
        """Where this function's replies may go (checked at send time for every reply)."""
        from core.services.replies import ReplyPolicy  # noqa: PLC0415 - only a step that ends a thread pays for it

        return ReplyPolicy(callback_hosts=self.reply_callback_hosts, allow_loopback=self.reply_allow_loopback)

    @field_validator("notify_webhook_url", "notify_slack_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        """Notifications carry signed links: plain HTTP only to this machine."""
        if value is None:
            return None
        parts = urlsplit(value)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError(f"a notification URL must be https:// (got a {parts.scheme or 'relative'} URL)")
        return value

    @model_validator(mode="after")
    def _email_pair(self) -> Settings:
        if bool(self.notify_email_from) != bool(self.notify_email_recipients):
            raise ValueError("email notifications need both STEPFOLD_NOTIFY_EMAIL_FROM and STEPFOLD_NOTIFY_EMAIL_TO")
        return self

    @property
    def notify_email_recipients(self) -> list[str]:
        """``STEPFOLD_NOTIFY_EMAIL_TO`` is a comma-separated list."""
        return [a.strip() for a in (self.notify_email_to or "").split(",") if a.strip()]

    def secret_sources(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """The secrets this function was given: (environment variable, ARN, the keys it may hold), in the order
        they are read. Least privilege (issue 13): a function's role may read exactly these, so a compromised
        function holds only its own keys."""
        arns = self.model_dump(by_alias=True)
        return [(name, arns[name], keys) for name, keys in SECRET_SOURCES.items() if arns.get(name)]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values = {k: v for k, v in source.items() if k in _ENV_NAMES and v != ""}
        return cls.model_validate(values)


_ENV_NAMES = {f.alias for f in Settings.model_fields.values() if f.alias}


def parse_prompt_versions(text: str) -> dict[str, int]:
    """``"support=2, billing=v1"`` -> ``{"support": 2, "billing": 1}``."""
    versions: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        agent, sep, version = (part.strip() for part in entry.partition("="))
        digits = version.lower().removeprefix("v")
        if not sep or not agent or not digits.isdigit() or int(digits) < 1:
            raise ValueError(f"STEPFOLD_PROMPT_VERSIONS entry {entry!r} must look like agent=N, e.g. support=2")
        versions[agent] = int(digits)
    return versions


def agents_with_prompt_versions(
    agents: Mapping[str, Agent], versions: Mapping[str, int], prompts: PromptLibrary
) -> dict[str, Agent]:
    """The agents with their prompt version replaced where ``versions`` says; checked at cold start, so a version
    without its prompt file fails the first invocation instead of the first thread that uses it."""
    unknown = sorted(set(versions) - set(agents))
    if unknown:
        raise ValueError(
            f"STEPFOLD_PROMPT_VERSIONS names {', '.join(unknown)}, which this stack does not run; "
            f"agents: {', '.join(sorted(agents))}"
        )
    pinned = {
        name: replace(agent, prompt_version=versions[name])
        if versions.get(name, agent.prompt_version) != agent.prompt_version
        else agent
        for name, agent in agents.items()
    }
    for name in versions:
        prompts.load(pinned[name].prompt_id, pinned[name].prompt_version)
    return pinned


SECRET_SOURCES: dict[str, tuple[str, ...]] = {
    "STEPFOLD_API_KEYS_SECRET_ARN": ("api_key", "api_keys"),
    "STEPFOLD_MODEL_KEYS_SECRET_ARN": ("openai_api_key", "anthropic_api_key", "mcp_servers"),
    "STEPFOLD_LINK_KEY_SECRET_ARN": ("link_signing_key",),
    "STEPFOLD_REPLY_KEY_SECRET_ARN": ("reply_signing_key",),
    "STEPFOLD_WEBHOOK_SECRETS_ARN": ("github_webhook_secret", "slack_signing_secret", "stepfold_webhook_secret"),
    "STEPFOLD_NOTIFIER_SECRETS_ARN": ("notify_webhook_secret", "notify_slack_url"),
}
"""One Secrets Manager secret per group of readers (template.yaml): the environment variable that names it and the
keys it holds. A key found in another group's secret is ignored with a warning that says where it belongs."""

SCOPES: tuple[str, ...] = ("read", "operate", "approve")
"""What an API key may do: ``read`` the GET routes, ``operate`` threads (launch, pause, resume, cancel, retry,
messages, fork), ``approve`` (answer what a thread waits for). Checked per request by functions/api.py."""
LEGACY_PRINCIPAL = "api-key"
"""The name of the single ``api_key`` (``STEPFOLD_API_KEY``): one principal with every scope."""
_PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


class ApiKey(BaseModel):
    """One named API key: its secret value and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=16, repr=False)
    scopes: tuple[str, ...] = Field(min_length=1)

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s) {', '.join(unknown)}; a key's scopes are some of {', '.join(SCOPES)}")
        return tuple(s for s in SCOPES if s in scopes)


class McpServerKeys(BaseModel):
    """How the step reaches one MCP server: the ``mcp_servers`` entry of the secret, by the server's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    """Used when the environment variable the declaration names (``url_setting``) is not set."""
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    """Sent with every request (``{"Authorization": "Bearer ..."}``): tokens live here, never in agent code."""


class Secrets(BaseModel):
    """Keys: from Secrets Manager in AWS (one secret per group of readers), from the environment locally.

    Never logged."""

    link_signing_key: str = Field(repr=False)
    api_key: str | None = Field(default=None, repr=False)
    """The single key of old: the principal ``api-key`` with every scope (``STEPFOLD_API_KEY`` locally)."""
    api_keys: dict[str, ApiKey] = Field(default_factory=dict, repr=False)
    """Named keys with scopes: ``{"ops-bot": {"key": "...", "scopes": ["read", "operate"]}}`` (the secret's
    ``api_keys``, ``STEPFOLD_API_KEYS`` locally, as JSON). The name is what the API records as ``by``."""
    openai_api_key: str | None = Field(default=None, repr=False)
    anthropic_api_key: str | None = Field(default=None, repr=False)
    notify_webhook_secret: str | None = Field(default=None, repr=False)
    notify_slack_url: str | None = Field(default=None, repr=False)
    github_webhook_secret: str | None = Field(default=None, repr=False)
    slack_signing_secret: str | None = Field(default=None, repr=False)
    stepfold_webhook_secret: str | None = Field(default=None, repr=False)
    """Verifies ``X-Stepfold-Signature`` on inbound webhooks. Never signs anything we send."""
    mcp_servers: dict[str, McpServerKeys] = Field(default_factory=dict, repr=False)
    """Per MCP server an agent declares (by its name): its headers, and its URL when no setting gives one
    (``{"ops": {"headers": {"Authorization": "Bearer ..."}}}``; ``STEPFOLD_MCP_SERVERS`` locally, as JSON)."""
    reply_signing_key: str | None = Field(default=None, repr=False)
    """Signs the replies sent to triggers' callback URLs: a key of its own, so nothing we send (a reply's body
    is the agent's answer) is ever valid as an inbound webhook delivery."""

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _mcp_servers_json(cls, value: object) -> object:
        """The secret may hold the object itself or a JSON string of it (``STEPFOLD_MCP_SERVERS`` always is one)."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(
                    'mcp_servers must be a JSON object like {"ops": {"headers": {"Authorization": "Bearer ..."}}}'
                ) from exc
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_json(cls, value: object) -> object:
        """The secret may hold the object itself or a JSON string of it (``STEPFOLD_API_KEYS`` always is one)."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(
                    'api_keys must be a JSON object like {"ops-bot": {"key": "...", "scopes": ["read"]}}'
                ) from exc
        if isinstance(value, dict):
            bad = sorted(str(name) for name in value if not _PRINCIPAL_NAME.fullmatch(str(name)))
            if bad:
                raise ValueError(
                    f"api_keys names {', '.join(map(repr, bad))} are not valid: use 1-64 letters, digits and ._@+- "
                    "(the name is recorded as who acted)"
                )
        return value

    @model_validator(mode="after")
    def _distinct_principals(self) -> Secrets:
        """Two principals with one key could not be told apart, and ``api-key`` is the single key's name."""
        if self.api_key and LEGACY_PRINCIPAL in self.api_keys:
            raise ValueError(
                f"api_keys names {LEGACY_PRINCIPAL!r}, which is the name of the single api_key: rename one of them"
            )
        seen: dict[str, str] = {}
        for name, entry in self.principals().items():
            if entry.key in seen:
                raise ValueError(f"api_keys {seen[entry.key]!r} and {name!r} have the same key: give each its own")
            seen[entry.key] = name
        return self

    def principals(self) -> dict[str, ApiKey]:
        """Every API key by the principal's name: the named keys, and the single ``api_key`` as ``api-key``."""
        found = dict(self.api_keys)
        if self.api_key:
            found[LEGACY_PRINCIPAL] = ApiKey.model_construct(key=self.api_key, scopes=SCOPES)
        return found

    @classmethod
    def load(
        cls, settings: Settings, secretsmanager: SecretsManagerClient | None, env: Mapping[str, str] | None = None
    ) -> Secrets:
        """The environment's keys, then the secrets this function was given (each only for its own keys): one
        read, through a :class:`SecretsLoader` of its own (``secretsmanager`` None: the environment's only)."""
        client = None if secretsmanager is None else (lambda: secretsmanager)
        return SecretsLoader(settings, client, env=env)()


_ENV_KEYS: dict[str, str] = {
    "link_signing_key": "STEPFOLD_LINK_SIGNING_KEY",
    "api_key": "STEPFOLD_API_KEY",
    "api_keys": "STEPFOLD_API_KEYS",
    "openai_api_key": "OPENAI_API_KEY",
    "anthropic_api_key": "ANTHROPIC_API_KEY",
    "notify_webhook_secret": "STEPFOLD_NOTIFY_WEBHOOK_SECRET",
    "github_webhook_secret": "STEPFOLD_GITHUB_WEBHOOK_SECRET",
    "slack_signing_secret": "STEPFOLD_SLACK_SIGNING_SECRET",
    "stepfold_webhook_secret": "STEPFOLD_WEBHOOK_SECRET",
    "reply_signing_key": "STEPFOLD_REPLY_SIGNING_KEY",
    "mcp_servers": "STEPFOLD_MCP_SERVERS",
}
"""The environment variable each key is read from (locally; in AWS the keys are in Secrets Manager)."""


@dataclass
class SecretsLoader:
    """A function's keys, read again when they may have changed: :attr:`Runtime.secrets` calls it at every use.

    The environment's keys come first, then the Secrets Manager secrets the function was given
    (:meth:`Settings.secret_sources`), each only for its own keys. The secrets are read through Powertools
    Parameters (``SecretsProvider``), which keeps each for ``STEPFOLD_SECRETS_MAX_AGE_SECONDS`` and then reads it
    again: a rotated secret reaches a warm container without a cold start. A call that finds what it read
    unchanged returns the same :class:`Secrets` (a cached read costs a dictionary lookup, no model validation),
    so a misplaced key is warned about once per change, and holders of the keys (the notifier's channels, the
    models) can tell a change by identity.
    """

    settings: Settings
    client: Callable[[], SecretsManagerClient] | None = None
    """Builds the Secrets Manager client at the first read of a secret; None: the environment's keys only."""
    env: Mapping[str, str] | None = None
    """Where the environment's keys are read (``os.environ`` at each call when None)."""
    _provider: SecretsProvider | None = field(default=None, init=False, repr=False)
    _last: tuple[dict[str, Any], Secrets] | None = field(default=None, init=False, repr=False)
    _local_link_key: str = field(default_factory=lambda: secrets.token_hex(32), init=False, repr=False)
    """The link signing key when none is configured (local only): one per process, so links die with it."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def sources(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(environment variable, ARN, the keys it may supply) of every secret read, in order: the single
        ``STEPFOLD_SECRETS_ARN`` (any key) first, then :meth:`Settings.secret_sources`."""
        if self.client is None:
            return []
        sources = self.settings.secret_sources()
        if self.settings.secrets_arn:
            sources.insert(0, ("STEPFOLD_SECRETS_ARN", self.settings.secrets_arn, tuple(Secrets.model_fields)))
        return sources

    def __call__(self) -> Secrets:
        with self._lock:
            env = os.environ if self.env is None else self.env
            values: dict[str, Any] = {key: env.get(variable) for key, variable in _ENV_KEYS.items()}
            stored = [(variable, keys, self._stored(variable, arn)) for variable, arn, keys in self.sources()]
            for _variable, keys, found in stored:
                values.update({k: v for k, v in found.items() if k in keys and v})
            if self._last is not None and self._last[0] == values:
                return self._last[1]
            for variable, keys, found in stored:
                _warn_misplaced(variable, keys, found)
            loaded = Secrets.model_validate(
                {"link_signing_key": self._local_link_key} | {k: v for k, v in values.items() if v}
            )
            self._last = (values, loaded)
            return loaded

    def _stored(self, variable: str, arn: str) -> dict[str, Any]:
        """The JSON object the secret holds: Powertools' cached copy while it is younger than the max age.

        A failed read raises what the Secrets Manager client raised (Powertools wraps it in a
        ``GetParameterError``), so ``functions._boundary`` still maps a throttled or unreachable Secrets Manager
        to ``DependencyUnavailable``, which Step Functions retries."""
        from aws_lambda_powertools.utilities.parameters import (  # noqa: PLC0415 - only a function that reads a secret pays for it
            GetParameterError,
            TransformParameterError,
        )

        provider = self._secrets_provider()
        try:
            stored = provider.get(arn, max_age=self.settings.secrets_max_age_seconds, transform="json")
        except GetParameterError as exc:
            if isinstance(exc.__context__, Exception):
                raise exc.__context__ from None
            raise
        except TransformParameterError as exc:
            where = exc.__cause__
            at = f" (line {where.lineno} column {where.colno})" if isinstance(where, json.JSONDecodeError) else ""
            raise ValueError(
                f"the secret that {variable} names is not JSON{at}; it must hold an object of keys, "
                'e.g. {"openai_api_key": "..."}'
            ) from None
        if not isinstance(stored, dict):
            raise ValueError(
                f"the secret that {variable} names holds a JSON {type(stored).__name__}; it must hold an "
                'object of keys, e.g. {"openai_api_key": "..."}'
            )
        return stored

    def _secrets_provider(self) -> SecretsProvider:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

            assert self.client is not None, "sources() is empty without a client"
            self._provider = SecretsProvider(boto3_client=self.client())
        return self._provider


def _warn_misplaced(variable: str, keys: tuple[str, ...], stored: Mapping[str, Any]) -> None:
    """A key found in another group's secret is ignored; say where it belongs (never its value)."""
    misplaced = sorted(k for k in stored if k in Secrets.model_fields and k not in keys)
    if misplaced:
        _log.warning(
            "the secret that %s names holds %s, which it may not supply (ignored); put each key in the secret of "
            "its readers: %s",
            variable,
            ", ".join(misplaced),
            "; ".join(f"{k} in {_source_of(k)}" for k in misplaced),
        )


def _source_of(key: str) -> str:
    return next((variable for variable, keys in SECRET_SOURCES.items() if key in keys), "STEPFOLD_SECRETS_ARN")


@dataclass
class Runtime:
    """One container's collaborators. Handlers get it from :func:`runtime`; the local stack injects its own."""

    settings: Settings
    threads: ThreadStore
    approvals: ApprovalStore
    sfn: SFNClient
    """The Step Functions client (boto3's, typed by the mypy-boto3-stepfunctions stubs)."""
    secrets_loader: Callable[[], Secrets]
    """The function's keys as they are now (a :class:`SecretsLoader`): called at every use of :attr:`secrets`."""
    agents: Mapping[str, Agent] = field(default_factory=lambda: AGENTS)
    scripted: Callable[[str], LLM] = scripted_model
    """Builds ``scripted:<name>`` models when ``provider_config`` has no ``scripted`` of its own: the agents
    package's brains (ARCHITECTURE.md "User space")."""
    prompts: PromptLibrary = field(default_factory=PromptLibrary)
    notifier: Notifier = field(default_factory=RecordingNotifier)
    clock: Callable[[], datetime] = utcnow
    provider_config: ProviderConfig | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    spend: SpendLedger | None = None
    """Per-agent daily cost ledger (budgets, and the cost by day that Operate shows)."""
    tracer: Any = None
    """Powertools Tracer when X-Ray tracing is active and its SDK is bundled, else None."""
    replier: Replier | None = None
    """Sends a triggered thread's answer back (its ``reply_to`` label); an HTTP one is built at the first reply."""
    mcp: McpTools | None = None
    """The MCP tools of agents that declare servers (ARCHITECTURE.md "MCP tools"): built by :meth:`mcp_tools` at the
    first step of such an agent's thread, so a container that never runs one never imports the MCP client."""
    _llms: dict[str, LLM] = field(default_factory=dict)
    _llm_keys: Secrets | None = None
    """The keys the models in ``_llms`` were built with: other keys (a rotated secret) build them anew."""
    _secrets: Secrets | None = None
    """Keys pinned by a test or the local stack in place of the loader's; None: the loader's."""

    @property
    def secrets(self) -> Secrets:
        """The function's keys: the loader's, which it reads again once they are older than
        ``STEPFOLD_SECRETS_MAX_AGE_SECONDS`` (a rotated secret is used without a cold start), unless pinned."""
        return self._secrets if self._secrets is not None else self.secrets_loader()

    def send_reply(self, thread_id: str) -> ReplyResult | None:
        """A step ended the thread: send its answer where its trigger asked (best effort, never raises).

        The destination is checked against :meth:`Settings.reply_policy` whichever replier is installed, and
        a signed reply is signed with ``reply_signing_key``, never an inbound webhook secret.
        """
        from core.services.replies import send_reply  # noqa: PLC0415 - only a step that ends a thread pays for it

        if self.replier is None:
            from core.adapters.replies import HttpReplier  # noqa: PLC0415

            self.replier = HttpReplier(
                lambda: self.secrets.reply_signing_key, allow_loopback=self.settings.reply_allow_loopback
            )
        return send_reply(self.threads.load(thread_id), self.replier, self.settings.reply_policy())

    def model_for(self, agent: Agent) -> str:
        """The model ``agent``'s steps use here: ``STEPFOLD_MODEL`` if set, else its own (:meth:`Agent.model_for`,
        which the step's ``llm_call`` record uses too, through :meth:`step_context`)."""
        return agent.model_for(self.settings.model)

    def use_provider_config(self, config: ProviderConfig | None) -> None:
        """Swap how models are built (tests, the local stack) and forget the models built so far."""
        self.provider_config = config
        self._forget_models()

    def _forget_models(self) -> None:
        for llm in self._llms.values():
            close = getattr(llm, "close", None)
            if callable(close):
                close()  # their connection pools: a dropped client leaves its sockets open
        self._llms.clear()

    def llm_for(self, agent: Agent) -> LLM:
        model = self.model_for(agent)
        keys = self.secrets if self.provider_config is None and not model.startswith("scripted:") else None
        if keys is not None and keys is not self._llm_keys:
            self._forget_models()  # built with keys that have since been rotated (or none built yet)
            self._llm_keys = keys
        if model not in self._llms:
            config = self.provider_config
            if keys is not None:
                config = ProviderConfig(
                    openai_base_url=self.settings.openai_base_url,
                    openai_api_key=keys.openai_api_key,
                    anthropic_base_url=self.settings.anthropic_base_url,
                    timeout_s=self.settings.model_timeout_seconds,
                    anthropic_api_key=keys.anthropic_api_key,
                )
            config = config or ProviderConfig()
            if config.scripted is None:  # the registry's brains: the kernel has none (ARCHITECTURE.md "User space")
                config = replace(config, scripted=self.scripted)
            self._llms[model] = make_llm(model, config)
        return self._llms[model]

    def mcp_tools(self, agent: Agent, thread: Thread, clock: Callable[[], datetime]) -> tuple[Agent, tuple[Event, ...]]:
        """The runner's tool resolver (``advance(tools=...)``): ``agent`` with the MCP tools ``thread`` pinned, and
        the events to record first."""
        if self.mcp is None:
            from core.adapters.mcp import HttpMcpConnector  # noqa: PLC0415 - only a step of an MCP agent pays for it
            from core.kernel.mcp import McpTools  # noqa: PLC0415

            self.mcp = McpTools(
                HttpMcpConnector(
                    self.mcp_endpoint,
                    max_age_s=self.settings.mcp_list_max_age_seconds,
                    timeout_s=self.settings.mcp_timeout_seconds,
                )
            )
        return self.mcp(agent, thread, clock)

    def mcp_endpoint(self, server: McpServer) -> tuple[str, dict[str, str]]:
        """An MCP server's URL (the environment variable its declaration names, else its secret entry's ``url``) and
        headers (its secret entry's only), read at every use."""
        keys = self.secrets.mcp_servers.get(server.name)
        url = os.environ.get(server.url_setting) or (keys.url if keys is not None else None)
        if not url:
            raise RuntimeError(
                f"MCP server {server.name}: set {server.url_setting} to its URL (or give its entry in the "
                "mcp_servers secret key a url)"
            )
        return url, dict(keys.headers) if keys is not None else {}

    def step_context(self) -> StepContext:
        return StepContext(prompts=self.prompts, clock=self.clock, model=self.settings.model)

    @property
    def executions(self) -> SfnExecutions:
        return SfnExecutions(self.sfn, self.settings.state_machine_arn)

    @property
    def waits(self) -> TokenWaits:
        return TokenWaits(self.sfn, self.approvals, self.clock)

    def now(self) -> datetime:
        result: datetime = self.clock()
        return result


@dataclass(frozen=True)
class SfnExecutions:
    """Starts the agent loop; the execution name ``<thread>-<seq>`` makes a repeated start a no-op."""

    sfn: SFNClient
    state_machine_arn: str | None

    def start(self, thread_id: str, seq: int) -> None:
        if not self.state_machine_arn:
            raise RuntimeError("STEPFOLD_STATE_MACHINE_ARN is not set: this function cannot start executions")
        with contextlib.suppress(self.sfn.exceptions.ExecutionAlreadyExists):
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=f"{thread_id}-{seq}",
                input=json.dumps({"thread_id": thread_id, "seq": seq, "iteration": 0}),
            )


@dataclass(frozen=True)
class TokenWaits:
    """Ends a human wait without an answer: SendTaskFailure with the token stored in the approval record."""

    sfn: SFNClient
    approvals: ApprovalStore
    clock: Callable[[], datetime]

    def cancel_wait(self, approval_id: str, reason: str) -> None:
        from core.services.approvals import ApprovalNotFoundError  # noqa: PLC0415

        try:
            approval = self.approvals.get(approval_id)
        except ApprovalNotFoundError:
            return  # the wait had not recorded its token yet; the cancelled thread ends at its next step
        self.approvals.close(approval_id, "cancelled", "system", int(self.clock().timestamp()))
        if approval.task_token:
            with contextlib.suppress(self.sfn.exceptions.TaskTimedOut, self.sfn.exceptions.InvalidToken):
                self.sfn.send_task_failure(taskToken=approval.task_token, error="Cancelled", cause=reason[:256])


_log = logging.getLogger("stepfold")


class UnsentNotifier(RecordingNotifier):
    """No channel is configured: record the request and log that nobody was told (never the link)."""

    def notify(self, approval: Approval, url: str) -> None:
        super().notify(approval, url)
        _log.warning(
            "no notification channel is configured; answer this request through the API",
            extra={"approval_id": approval.approval_id, "thread_id": approval.thread_id},
        )

    def alert(self, alert: Alert) -> None:
        super().alert(alert)
        _log.warning("no notification channel is configured: %s", alert.title, extra={"thread_id": alert.thread_id})


@dataclass
class DeferredNotifier:
    """Builds the channels at the first notification: only request_human notifies, so only it loads the secret.

    ``keys`` returns the keys the channels are built with: when it returns other keys (a rotated secret, read
    again by :class:`SecretsLoader`), the channels are built anew."""

    build: Callable[[], Notifier]
    keys: Callable[[], object] = lambda: None
    _built: Notifier | None = None
    _built_with: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def notify(self, approval: Approval, url: str) -> None:
        self._channels().notify(approval, url)

    def alert(self, alert: Alert) -> None:
        self._channels().alert(alert)

    def _channels(self) -> Notifier:
        with self._lock:
            keys = self.keys()
            if self._built is None or keys is not self._built_with:
                self._built, self._built_with = self.build(), keys
            return self._built


def build_notifier(
    settings: Settings,
    keys: Secrets,
    *,
    http: Callable[[], httpx.Client] | None = None,
    ses: Callable[[], SESClient] | None = None,
) -> Notifier:
    """The configured channels (webhook, Slack, email), or an :class:`UnsentNotifier` when there are none."""
    from core.adapters.notify import EmailNotifier, SlackNotifier, WebhookNotifier  # noqa: PLC0415 - at the first notification

    channels: list[Notifier] = []
    client: httpx.Client | None = None

    def http_client() -> httpx.Client:
        nonlocal client
        if client is None:
            if http is not None:
                client = http()
            else:
                import httpx  # noqa: PLC0415 - only a function that notifies over HTTP pays for it

                client = httpx.Client(timeout=10.0, follow_redirects=False)
        return client

    if settings.notify_webhook_url:
        if not keys.notify_webhook_secret:
            raise RuntimeError(
                "STEPFOLD_NOTIFY_WEBHOOK_URL is set but there is no webhook signing secret: add "
                "notify_webhook_secret to the stepfold secret (STEPFOLD_NOTIFY_WEBHOOK_SECRET locally)"
            )
        channels.append(WebhookNotifier(settings.notify_webhook_url, keys.notify_webhook_secret, http_client()))
    slack_url = keys.notify_slack_url or settings.notify_slack_url
    if slack_url:
        channels.append(SlackNotifier(slack_url, http_client()))
    if settings.notify_email_from:
        if ses is None:
            import boto3  # noqa: PLC0415

            ses_client = boto3.client("ses")
        else:
            ses_client = ses()
        channels.append(EmailNotifier(ses_client, settings.notify_email_from, settings.notify_email_recipients))
    return MultiNotifier(channels) if channels else UnsentNotifier()


def warn_unpriced_override(model: str | None, agents: Mapping[str, Agent]) -> list[str]:
    """``STEPFOLD_MODEL`` replaces every agent's model after construction checked their prices: say at cold start
    which agents' cost limits cannot hold under it. Returns those agents' names."""
    from core.kernel.pricing import price_for  # noqa: PLC0415

    if not model or price_for(model) is not None:
        return []
    limited = sorted(
        name
        for name, agent in agents.items()
        if agent.limits.max_cost_usd is not None or agent.limits.max_daily_cost_usd is not None
    )
    if limited:
        _log.warning(
            "STEPFOLD_MODEL=%s has no price in core/kernel/pricing.py: the cost limits of %s cannot hold "
            "(every call counts as $0)",
            model,
            ", ".join(limited),
        )
    return limited


class LazyClient:
    """A boto3 client made at its first use (any attribute: a call, ``exceptions``, ``meta``).

    Making a client loads its service model, tens of milliseconds each: a cold start pays only for the clients
    its function calls (the step calls DynamoDB; S3 only for a large event, Step Functions never). The approval
    store is made the same way (:func:`build_runtime`): the step never uses it.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def made(self) -> bool:
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy/pickle probes and our own fields: never make a client for them
            raise AttributeError(name)
        with self._lock:
            if self._client is None:
                self._client = self._make()
        return getattr(self._client, name)


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Clients for the real AWS (or whatever ``AWS_ENDPOINT_URL`` points boto3 at).

    DynamoDB's client is made here (every function reads the table); S3's and Step Functions' at their first use
    (:class:`LazyClient`), Secrets Manager's and SES's when a key is read or an email sent.
    """
    import boto3  # noqa: PLC0415 - keep import time off the module

    from core.adapters.store.dynamodb import DynamoThreadStore  # noqa: PLC0415

    settings = settings or Settings.from_env()
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb")
    s3 = cast("S3Client", LazyClient(lambda: session.client("s3")))
    threads = DynamoThreadStore(settings.table, dynamodb, s3, settings.bucket, offload_bytes=settings.offload_bytes)
    sfn = cast("SFNClient", LazyClient(lambda: session.client("stepfunctions")))
    prompts = PromptLibrary()
    rt = Runtime(
        settings=settings,
        agents=agents_with_prompt_versions(AGENTS, settings.prompt_versions, prompts),
        prompts=prompts,
        threads=threads,
        approvals=cast("ApprovalStore", LazyClient(lambda: _approval_store(settings.table, dynamodb))),
        sfn=sfn,
        clients={"dynamodb": dynamodb, "s3": s3, "stepfunctions": sfn},
        spend=DynamoSpendLedger(settings.table, dynamodb),
        secrets_loader=SecretsLoader(settings, lambda: session.client("secretsmanager")),
    )
    rt.notifier = DeferredNotifier(
        lambda: build_notifier(settings, rt.secrets, ses=lambda: session.client("ses")), keys=lambda: rt.secrets
    )
    warn_unpriced_override(settings.model, rt.agents)
    if os.environ.get("AWS_XRAY_DAEMON_ADDRESS"):  # set by Lambda when the function's tracing is active
        from functions._observe import tracer_or_none  # noqa: PLC0415

        rt.tracer = tracer_or_none()
    return rt


def _approval_store(table: str, dynamodb: DynamoDBClient) -> ApprovalStore:
    """The approval records' store, made at its first use: only the functions that open, decide or cancel a human
    wait use it, so the step's cold start does not import the approvals service and its models."""
    from core.adapters.store.approvals_dynamodb import DynamoApprovalStore  # noqa: PLC0415

    return DynamoApprovalStore(table, dynamodb)


_RUNTIME: Runtime | None = None
_LOCK = threading.Lock()


def runtime() -> Runtime:
    """The container's runtime, built on first use."""
    global _RUNTIME  # noqa: PLW0603 - one per container, by design
    with _LOCK:
        if _RUNTIME is None:
            _RUNTIME = build_runtime()
        return _RUNTIME


def install_runtime(value: Runtime | None) -> None:
    """Replace the container's runtime (the local stack and tests; None rebuilds from the environment)."""
    global _RUNTIME  # noqa: PLW0603
    with _LOCK:
        _RUNTIME = value
