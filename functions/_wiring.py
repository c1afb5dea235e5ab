"""Settings and clients, built once per container at the first invocation (never at import time)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from core.agent import Agent, StepContext
from core.agents import AGENTS
from core.approvals import Approval, ApprovalStore
from core.budget import DynamoSpendLedger, SpendLedger
from core.events import utcnow
from core.llm import LLM, ProviderConfig, make_llm
from core.notify import EmailNotifier, MultiNotifier, Notifier, RecordingNotifier, SlackNotifier, WebhookNotifier
from core.prompts import PromptLibrary
from core.replies import HttpReplier, Replier, ReplyResult, send_reply
from core.store.base import ThreadStore

if TYPE_CHECKING:
    import httpx


class Settings(BaseModel):
    """Everything a handler needs from its environment, parsed once (template.yaml sets these in AWS)."""

    table: str = Field(default="stepfold-threads", alias="STEPFOLD_TABLE")
    bucket: str = Field(default="stepfold-payloads", alias="STEPFOLD_BUCKET")
    model: str | None = Field(default=None, alias="STEPFOLD_MODEL")
    state_machine_arn: str | None = Field(default=None, alias="STEPFOLD_STATE_MACHINE_ARN")
    approval_timeout_seconds: int = Field(default=86_400, ge=1, alias="STEPFOLD_APPROVAL_TIMEOUT_SECONDS")
    public_url: str = Field(default="http://127.0.0.1:8765", alias="STEPFOLD_PUBLIC_URL")
    secrets_arn: str | None = Field(default=None, alias="STEPFOLD_SECRETS_ARN")
    offload_bytes: int = Field(default=32_000, ge=1_000, le=350_000, alias="STEPFOLD_OFFLOAD_BYTES")
    openai_base_url: str = Field(default="https://api.openai.com/v1", alias="OPENAI_BASE_URL")
    default_agent: str = Field(default="calculator", min_length=1, alias="STEPFOLD_DEFAULT_AGENT")
    notify_webhook_url: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_WEBHOOK_URL")
    notify_slack_url: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_SLACK_URL")
    notify_email_from: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_EMAIL_FROM")
    notify_email_to: str | None = Field(default=None, alias="STEPFOLD_NOTIFY_EMAIL_TO")
    prompt_versions: dict[str, int] = Field(default_factory=dict, alias="STEPFOLD_PROMPT_VERSIONS")
    """Prompt version per agent for NEW threads (``deploybot=2,calculator=1``); a thread keeps the version it was
    launched with. Empty: each agent's own. Rollout and rollback are a change of this one parameter."""

    @field_validator("prompt_versions", mode="before")
    @classmethod
    def _prompt_versions(cls, value: object) -> object:
        return parse_prompt_versions(value) if isinstance(value, str) else value

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values = {k: v for k, v in source.items() if k in _ENV_NAMES and v != ""}
        return cls.model_validate(values)


_ENV_NAMES = {f.alias for f in Settings.model_fields.values() if f.alias}


def parse_prompt_versions(text: str) -> dict[str, int]:
    """``"deploybot=2, calculator=v1"`` -> ``{"deploybot": 2, "calculator": 1}``."""
    versions: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        agent, sep, version = (part.strip() for part in entry.partition("="))
        digits = version.lower().removeprefix("v")
        if not sep or not agent or not digits.isdigit() or int(digits) < 1:
            raise ValueError(f"STEPFOLD_PROMPT_VERSIONS entry {entry!r} must look like agent=N, e.g. deploybot=2")
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


class Secrets(BaseModel):
    """Keys: from Secrets Manager in AWS (one JSON secret), from the environment locally. Never logged."""

    link_signing_key: str = Field(repr=False)
    api_key: str | None = Field(default=None, repr=False)
    openai_api_key: str | None = Field(default=None, repr=False)
    anthropic_api_key: str | None = Field(default=None, repr=False)
    notify_webhook_secret: str | None = Field(default=None, repr=False)
    notify_slack_url: str | None = Field(default=None, repr=False)
    github_webhook_secret: str | None = Field(default=None, repr=False)
    slack_signing_secret: str | None = Field(default=None, repr=False)
    stepfold_webhook_secret: str | None = Field(default=None, repr=False)
    """Verifies ``X-Stepfold-Signature`` on inbound webhooks and signs the replies sent to their callback URLs."""

    @classmethod
    def load(cls, settings: Settings, secretsmanager: Any | None, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "link_signing_key": env.get("STEPFOLD_LINK_SIGNING_KEY"),
            "api_key": env.get("STEPFOLD_API_KEY"),
            "openai_api_key": env.get("OPENAI_API_KEY"),
            "anthropic_api_key": env.get("ANTHROPIC_API_KEY"),
            "notify_webhook_secret": env.get("STEPFOLD_NOTIFY_WEBHOOK_SECRET"),
            "github_webhook_secret": env.get("STEPFOLD_GITHUB_WEBHOOK_SECRET"),
            "slack_signing_secret": env.get("STEPFOLD_SLACK_SIGNING_SECRET"),
            "stepfold_webhook_secret": env.get("STEPFOLD_WEBHOOK_SECRET"),
        }
        if settings.secrets_arn and secretsmanager is not None:
            stored = json.loads(secretsmanager.get_secret_value(SecretId=settings.secrets_arn)["SecretString"])
            values.update({k: v for k, v in stored.items() if k in cls.model_fields and v})
        if not values["link_signing_key"]:
            values["link_signing_key"] = secrets.token_hex(32)  # local only: links die with the process
        return cls.model_validate({k: v for k, v in values.items() if v})


@dataclass
class Runtime:
    """One container's collaborators. Handlers get it from :func:`runtime`; the local stack injects its own."""

    settings: Settings
    threads: ThreadStore
    approvals: ApprovalStore
    sfn: Any
    secrets_loader: Any
    agents: Mapping[str, Agent] = field(default_factory=lambda: AGENTS)
    prompts: PromptLibrary = field(default_factory=PromptLibrary)
    notifier: Notifier = field(default_factory=RecordingNotifier)
    clock: Any = utcnow
    provider_config: ProviderConfig | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    spend: SpendLedger | None = None
    """Per-agent daily cost ledger (budgets, and the cost by day that Operate shows)."""
    tracer: Any = None
    """Powertools Tracer when X-Ray tracing is active and its SDK is bundled, else None."""
    replier: Replier | None = None
    """Sends a triggered thread's answer back (its ``reply_to`` label); an HTTP one is built at the first reply."""
    _llms: dict[str, LLM] = field(default_factory=dict)
    _secrets: Secrets | None = None

    @property
    def secrets(self) -> Secrets:
        if self._secrets is None:
            self._secrets = self.secrets_loader()
        return self._secrets

    def send_reply(self, thread_id: str) -> ReplyResult | None:
        """A step ended the thread: send its answer where its trigger asked (best effort, never raises)."""
        if self.replier is None:
            self.replier = HttpReplier(lambda: self.secrets.stepfold_webhook_secret)
        return send_reply(self.threads.load(thread_id), self.replier)

    def model_for(self, agent: Agent) -> str:
        """``STEPFOLD_MODEL`` overrides every agent's own model string."""
        return self.settings.model or agent.model

    def use_provider_config(self, config: ProviderConfig | None) -> None:
        """Swap how models are built (tests, the local stack) and forget the models built so far."""
        self.provider_config = config
        self._llms.clear()

    def llm_for(self, agent: Agent) -> LLM:
        model = self.model_for(agent)
        if model not in self._llms:
            config = self.provider_config
            if config is None and not model.startswith("scripted:"):
                keys = self.secrets
                config = ProviderConfig(
                    openai_base_url=self.settings.openai_base_url,
                    openai_api_key=keys.openai_api_key,
                    anthropic_api_key=keys.anthropic_api_key,
                )
            self._llms[model] = make_llm(model, config)
        return self._llms[model]

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

    sfn: Any
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

    sfn: Any
    approvals: ApprovalStore
    clock: Any

    def cancel_wait(self, approval_id: str, reason: str) -> None:
        from core.approvals import ApprovalNotFoundError  # noqa: PLC0415

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


@dataclass
class DeferredNotifier:
    """Builds the channels at the first notification: only request_human notifies, so only it loads the secret."""

    build: Callable[[], Notifier]
    _built: Notifier | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def notify(self, approval: Approval, url: str) -> None:
        with self._lock:
            if self._built is None:
                self._built = self.build()
            built = self._built
        built.notify(approval, url)


def build_notifier(
    settings: Settings,
    keys: Secrets,
    *,
    http: Callable[[], httpx.Client] | None = None,
    ses: Callable[[], Any] | None = None,
) -> Notifier:
    """The configured channels (webhook, Slack, email), or an :class:`UnsentNotifier` when there are none."""
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


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Clients for the real AWS (or whatever ``AWS_ENDPOINT_URL`` points boto3 at)."""
    import boto3  # noqa: PLC0415 - keep import time off the module

    from core.store.approvals_dynamodb import DynamoApprovalStore  # noqa: PLC0415
    from core.store.dynamodb import DynamoThreadStore  # noqa: PLC0415

    settings = settings or Settings.from_env()
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb")
    s3 = session.client("s3")
    threads = DynamoThreadStore(settings.table, dynamodb, s3, settings.bucket, offload_bytes=settings.offload_bytes)
    sfn = session.client("stepfunctions")
    prompts = PromptLibrary()
    rt = Runtime(
        settings=settings,
        agents=agents_with_prompt_versions(AGENTS, settings.prompt_versions, prompts),
        prompts=prompts,
        threads=threads,
        approvals=DynamoApprovalStore(settings.table, dynamodb),
        sfn=sfn,
        clients={"dynamodb": dynamodb, "s3": s3, "stepfunctions": sfn},
        spend=DynamoSpendLedger(settings.table, dynamodb),
        secrets_loader=lambda: Secrets.load(
            settings, session.client("secretsmanager") if settings.secrets_arn else None
        ),
    )
    rt.notifier = DeferredNotifier(lambda: build_notifier(settings, rt.secrets, ses=lambda: session.client("ses")))
    if os.environ.get("AWS_XRAY_DAEMON_ADDRESS"):  # set by Lambda when the function's tracing is active
        from functions._observe import tracer_or_none  # noqa: PLC0415

        rt.tracer = tracer_or_none()
    return rt


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
