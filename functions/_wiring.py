"""Settings and clients, built once per container at the first invocation (never at import time)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.agent import Agent, StepContext
from core.agents import AGENTS
from core.approvals import ApprovalStore
from core.events import utcnow
from core.llm import LLM, ProviderConfig, make_llm
from core.notify import Notifier, RecordingNotifier
from core.prompts import PromptLibrary
from core.store.base import ThreadStore


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values = {k: v for k, v in source.items() if k in _ENV_NAMES and v != ""}
        return cls.model_validate(values)


_ENV_NAMES = {f.alias for f in Settings.model_fields.values() if f.alias}


class Secrets(BaseModel):
    """Keys: from Secrets Manager in AWS (one JSON secret), from the environment locally. Never logged."""

    link_signing_key: str = Field(repr=False)
    api_key: str | None = Field(default=None, repr=False)
    openai_api_key: str | None = Field(default=None, repr=False)
    anthropic_api_key: str | None = Field(default=None, repr=False)

    @classmethod
    def load(cls, settings: Settings, secretsmanager: Any | None, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "link_signing_key": env.get("STEPFOLD_LINK_SIGNING_KEY"),
            "api_key": env.get("STEPFOLD_API_KEY"),
            "openai_api_key": env.get("OPENAI_API_KEY"),
            "anthropic_api_key": env.get("ANTHROPIC_API_KEY"),
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
    _llms: dict[str, LLM] = field(default_factory=dict)
    _secrets: Secrets | None = None

    @property
    def secrets(self) -> Secrets:
        if self._secrets is None:
            self._secrets = self.secrets_loader()
        return self._secrets

    def model_for(self, agent: Agent) -> str:
        """``STEPFOLD_MODEL`` overrides every agent's own model string."""
        return self.settings.model or agent.model

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


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Clients for the real AWS (or whatever ``AWS_ENDPOINT_URL`` points boto3 at)."""
    import boto3  # noqa: PLC0415 - keep import time off the module

    from core.store.approvals_dynamodb import DynamoApprovalStore  # noqa: PLC0415
    from core.store.dynamodb import DynamoThreadStore  # noqa: PLC0415

    settings = settings or Settings.from_env()
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb")
    threads = DynamoThreadStore(
        settings.table, dynamodb, session.client("s3"), settings.bucket, offload_bytes=settings.offload_bytes
    )
    sfn = session.client("stepfunctions")
    return Runtime(
        settings=settings,
        threads=threads,
        approvals=DynamoApprovalStore(settings.table, dynamodb),
        sfn=sfn,
        clients={"dynamodb": dynamodb, "stepfunctions": sfn},
        secrets_loader=lambda: Secrets.load(
            settings, session.client("secretsmanager") if settings.secrets_arn else None
        ),
    )


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
