"""``stepfold``: drive agents through the HTTP API, locally (``stepfold serve``) or on AWS.

Every command except ``serve`` is one or a few HTTP calls to ``STEPFOLD_URL`` with ``STEPFOLD_API_KEY``,
so the same CLI drives the local stack and a deployed one. Exit codes: 0 ok, 1 the API refused or failed
(``error: <detail>`` on stderr), 2 usage, 3 the API cannot be reached. ``export``, ``eval``, ``replay`` and
``fork`` (:mod:`infra.cli_evals`), ``schedules``, ``trigger-schedule`` and ``put-event``
(:mod:`infra.cli_triggers`) register themselves here (see :data:`EXTENSIONS`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from core.services.approvals import Approval
    from core.services.notify import Alert, Notifier
    from infra.local.events import Scheduler, TemplateSchedule
    from infra.local.stack import LocalStack

DEFAULT_URL = "http://127.0.0.1:8765"
STOP = ("done", "failed", "awaiting_human", "paused")
"""A followed thread stops here: it ended, or it waits for someone."""
OK, API_ERROR, USAGE, UNREACHABLE = 0, 1, 2, 3
LOCAL_WEBHOOK_SECRETS = ("STEPFOLD_GITHUB_WEBHOOK_SECRET", "STEPFOLD_SLACK_SIGNING_SECRET", "STEPFOLD_WEBHOOK_SECRET")
"""The inbound webhook secrets ``stepfold serve`` reads from the environment (generated when unset)."""
SERVE_QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
"""``stepfold serve``'s defaults for the handlers' Powertools; the caller's environment wins."""


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class UnreachableError(Exception):
    """Nothing answered at the base URL."""


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of our ``{error, detail}`` errors; API Gateway's own errors say ``message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if not isinstance(body, dict):
        return json.dumps(body)[:500]
    detail = body.get("detail") or body.get("message") or body.get("error") or json.dumps(body)[:500]
    if isinstance(detail, list):  # a validation error: where and what
        return "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict)
        )
    return detail if isinstance(detail, str) else json.dumps(detail)


class Api:
    """A small client of the stepfold HTTP API."""

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.http.request(method, path, json=body, params=query)
        except httpx.ConnectError as exc:
            raise UnreachableError(f"cannot connect to {self.url} ({exc})") from exc
        except httpx.TimeoutException as exc:
            raise ApiError(0, f"{self.url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # refused mid-way, reset, not HTTP at all: one line, no traceback
            raise UnreachableError(f"cannot talk to {self.url} ({type(exc).__name__}: {exc})") from exc
        except httpx.InvalidURL as exc:
            raise UnreachableError(f"{self.url} is not a URL the CLI can call ({exc})") from exc
        if response.status_code >= 400:
            detail = _detail(response)
            if response.status_code in (401, 403):
                detail += "; set STEPFOLD_API_KEY to the API key (`stepfold serve` prints the local one)"
            raise ApiError(response.status_code, detail)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"{self.url}{path} answered {response.status_code} with a body that is not JSON; "
                "is STEPFOLD_URL the stepfold API?",
            ) from None

    def close(self) -> None:
        self.http.close()


def _q(thread_id: str) -> str:
    return quote(thread_id, safe="")


# --- the step-by-step view -------------------------------------------------------------------------


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _args(args: Any, limit: int = 60) -> str:
    if not isinstance(args, dict):
        return _short(args, limit)
    return _short(" ".join(f"{k}={v!r}" for k, v in args.items()), limit)


@dataclass
class StepView:
    """Turns a thread's events into the lines of ``stepfold events``: one line per model step and tool result."""

    steps: int = 0
    prefetch: set[str] = field(default_factory=set)

    def lines(self, event: dict[str, Any]) -> list[str]:
        seq = f"{event.get('seq', '?'):>3}"
        head, route = f"{seq}        ", "           route: "
        get = event.get
        match get("type"):
            case "user_input":
                return [f"{seq} input     {_short(get('text', ''), 90)}  (from {get('source', '?')})"]
            case "llm_call":
                self.steps += 1
                output = get("output") or {}
                name = output.get("name") or ("(text)" if "text" in output else "(error)")
                usage = f"tokens {get('input_tokens', 0)}+{get('output_tokens', 0)}  ${float(get('cost_usd') or 0):.6f}"
                return [f"{seq} step {self.steps:>2}  {name:<20} {_args(output.get('arguments'))}  {usage}"]
            case "tool_call" if get("prefetch"):
                self.prefetch.add(str(get("call_id")))
                return [f"{seq} pre-fetch {get('tool')} {_args(get('args'))}".rstrip()]
            case "tool_result":
                line = f"{head}-> {get('tool')}: {_short(get('result'))}"
                return [line] if get("call_id") in self.prefetch else [line, f"{route}continue"]
            case "error":
                return [f"{head}!! {get('kind')}: {_short(get('message'))}", f"{route}continue"]
            case "human_request":
                what = f"waiting for a human ({get('kind')} {get('approval_id')})"
                return [f"{head}?? {what}: {_short(get('question'))}", f"{route}await_human"]
            case "human_response":
                said = get("comment") or get("answer") or (_args(get("args")) if get("args") else "")
                said = f": {_short(said)}" if said else ""
                note = f" (note: {_short(get('note'), 60)})" if get("note") else ""
                return [f"{head}<- {get('by')} via {get('channel')}: {get('decision')}{said}{note}"]
            case "paused":
                reason = f" ({get('reason')})" if get("reason") else ""
                return [f"{head}|| paused by {get('by')}{reason}", f"{route}paused"]
            case "resumed":
                return [f"{head}>> resumed by {get('by')}"]
            case "retried":
                return [f"{head}>> retried by {get('by')}"]
            case "done":
                typed = [f"{' ' * len(head)}   typed: {_short(json.dumps(get('data')), 90)}"] if get("data") else []
                return [f"{head}== done: {_short(get('answer'), 90)}", *typed, f"{route}done"]
            case "failed":
                return [f"{head}xx failed: {_short(get('reason'), 90)}", f"{route}failed"]
            case "tools_listed" if get("pinned", True):
                names = ", ".join(str(tool.get("name")) for tool in get("tools") or [])
                return [f"{seq} mcp       {get('server')}: tools pinned for this thread: {_short(names, 80)}"]
            case "tools_listed":
                changes = "; ".join(get("changes") or [])
                return [f"{head}~~ mcp {get('server')} lists other tools now: {_short(changes, 80)}"]
            case _:
                return []


def _hint(thread_id: str, summary: dict[str, Any]) -> str:
    """What to do next with a thread that stopped."""
    status = summary.get("status")
    usage = (
        f"{summary.get('steps', 0)} model calls, {summary.get('input_tokens', 0)}+{summary.get('output_tokens', 0)} "
        f"tokens, ${float(summary.get('cost_usd') or 0):.6f}"
    )
    if status == "awaiting_human":
        what = f"{summary.get('waiting_for') or 'a human'} {summary.get('approval_id') or ''}".strip()
        act = (
            f"stepfold answer {thread_id} '...'"
            if summary.get("waiting_for") == "question"
            else f"stepfold approve {thread_id}  |  stepfold reject {thread_id} --reason '...'"
        )
        return (
            f"== awaiting_human ({what}) after {usage}\n"
            f"   open the approval link that was sent (`stepfold serve` prints it), or: {act}"
        )
    if status == "paused":
        return f"== paused after {usage}: `stepfold resume {thread_id}` continues it"
    if status == "failed" and summary.get("failure"):
        return f"== failed after {usage}: {summary['failure']}"
    return f"== {status} after {usage}"


def _events(api: Api, thread_id: str, after: int | None) -> Iterator[dict[str, Any]]:
    """Every event with seq > ``after``, page by page."""
    while True:
        page = api.call("GET", f"/threads/{_q(thread_id)}/events", params={"after": after})
        fresh = [e for e in page.get("events", []) if after is None or int(e.get("seq", -1)) > after]
        if not fresh:
            return
        yield from fresh
        after = max(int(e["seq"]) for e in fresh)


def follow(
    api: Api,
    thread_id: str,
    *,
    after: int | None,
    live: bool,
    as_json: bool,
    out: Callable[[str], None],
    interval: float = 0.25,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Print the thread's events after ``after``; with ``live``, poll until it ends or waits. Returns its summary.

    Earlier events are read too (not printed) so that step numbers count from the thread's start.
    """
    view = StepView()
    deadline = None if timeout is None else time.monotonic() + timeout
    read: int | None = None
    while True:
        summary: dict[str, Any] = api.call("GET", f"/threads/{_q(thread_id)}")
        for event in _events(api, thread_id, read):
            read = int(event["seq"])
            lines = [json.dumps(event)] if as_json else view.lines(event)
            if after is None or read > after:
                for line in lines:
                    out(line)
        seen_all = read is not None and read + 1 >= int(summary.get("events") or 0)
        if not live or (summary.get("status") in STOP and seen_all):
            return summary
        if deadline is not None and time.monotonic() > deadline:
            raise ApiError(0, f"thread {thread_id} is still {summary.get('status')} after {timeout:g}s")
        time.sleep(interval)


# --- commands ------------------------------------------------------------------------------------


def _print_summary(summary: dict[str, Any], out: Callable[[str], None]) -> None:
    rows = [
        ("thread", summary.get("thread_id")),
        ("agent", summary.get("agent")),
        ("status", summary.get("status")),
        ("steps", f"{summary.get('steps', 0)} model calls, {summary.get('events', 0)} events"),
        (
            "usage",
            f"{summary.get('input_tokens', 0)}+{summary.get('output_tokens', 0)} tokens, "
            f"${float(summary.get('cost_usd') or 0):.6f}",
        ),
    ]
    pending = summary.get("pending") or {}
    if summary.get("waiting_for") and summary.get("status") == "awaiting_human":
        rows.append(
            ("waiting", f"{summary['waiting_for']} {summary.get('approval_id')}: {_short(pending.get('question'), 90)}")
        )
    if pending.get("tool"):
        rows.append(("tool", f"{pending['tool']} {_args(pending.get('args'), 90)}"))
    if summary.get("answer"):
        rows.append(("answer", summary["answer"]))
    if summary.get("data"):
        rows.append(("data", json.dumps(summary["data"], sort_keys=True)))
    if summary.get("failure"):
        rows.append(("failure", summary["failure"]))
    for name, value in rows:
        out(f"{name:<8} {value}")


def cmd_launch(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    body = {"agent": args.agent, "input": args.input, "idempotency_key": args.idempotency_key}
    launched = api.call("POST", "/threads", body={k: v for k, v in body.items() if v is not None})
    thread_id = launched["thread_id"]
    if args.json and not args.wait:
        out(json.dumps(launched))
        return OK
    new = "launched" if launched.get("created", True) else "existing (same idempotency key)"
    out(f"{thread_id}  {args.agent}  {launched.get('status')}  {new}")
    if args.wait:
        summary = follow(api, thread_id, after=None, live=True, as_json=args.json, out=out, timeout=args.timeout)
        if not args.json:
            out(_hint(thread_id, summary))
    return OK


def cmd_status(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    summary = api.call("GET", f"/threads/{_q(args.thread_id)}")
    if args.json:
        out(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, out)
    return OK


def cmd_events(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    summary = follow(
        api, args.thread_id, after=args.after, live=args.follow, as_json=args.json, out=out, timeout=args.timeout
    )
    if args.follow and not args.json:
        out(_hint(args.thread_id, summary))
    return OK


def _respond(api: Api, args: argparse.Namespace, out: Callable[[str], None], body: dict[str, Any]) -> int:
    # The API records the decision as made by the API key's principal; --note is only a display note beside it.
    body = {**({"note": str(args.by)} if args.by else {}), **{k: v for k, v in body.items() if v not in (None, "")}}
    if getattr(args, "approval_id", None):
        body["approval_id"] = args.approval_id
    result = api.call("POST", f"/threads/{_q(args.thread_id)}/responses", body=body)
    if args.json:
        out(json.dumps(result))
        return OK
    status = result.get("status") if isinstance(result, dict) else None
    out(f"{args.thread_id}  {body['decision']} recorded" + (f"; the thread is {status}" if status else ""))
    return OK


def cmd_approve(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    return _respond(api, args, out, {"decision": "approve", "comment": args.comment})


def cmd_reject(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    return _respond(api, args, out, {"decision": "reject", "comment": args.reason})


def cmd_answer(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    return _respond(api, args, out, {"decision": "answer", "answer": args.text})


DONE_WORDS = {"pause": "paused", "resume": "resumed", "retry": "retried", "cancel": "cancelled"}
"""What the confirmation says was done (the thread's status follows it: a cancelled thread's status is failed)."""


def _control(action: str) -> Callable[[Api, argparse.Namespace, Callable[[str], None]], int]:
    def run(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
        reason = getattr(args, "reason", None)
        result = api.call("POST", f"/threads/{_q(args.thread_id)}/{action}", body={"reason": reason} if reason else {})
        if args.json:
            out(json.dumps(result))
            return OK
        status = result.get("status") if isinstance(result, dict) else None
        out(f"{args.thread_id}  {DONE_WORDS[action]}" + (f"; the thread is {status}" if status else ""))
        return OK

    return run


def cmd_message(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    result = api.call("POST", f"/threads/{_q(args.thread_id)}/messages", body={"input": args.text})
    if args.json:
        out(json.dumps(result))
        return OK
    out(f"{args.thread_id}  message added; the thread is {result.get('status', '?')}")
    return OK


def cmd_list(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    page = api.call("GET", "/threads", params={"status": args.status, "agent": args.agent, "cursor": args.cursor})
    if args.json:
        out(json.dumps(page, indent=2))
        return OK
    threads = page.get("threads", [])
    out(f"{'THREAD':<24} {'AGENT':<12} {'STATUS':<15} UPDATED")
    for t in threads:
        out(
            f"{t.get('thread_id', ''):<24} {t.get('agent', ''):<12} {t.get('status', ''):<15} {t.get('updated_at', '')}"
        )
    if not threads:
        out("(no threads)")
    if page.get("next_cursor"):
        out(f"more: stepfold list --cursor {page['next_cursor']}")
    return OK


def cmd_agents(api: Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    found = api.call("GET", "/agents")
    agents = found.get("agents", found) if isinstance(found, dict) else found
    if args.json:
        out(json.dumps(found, indent=2))
        return OK
    for agent in agents if isinstance(agents, list) else []:
        tools = agent.get("tools") or []
        names = ", ".join(t if isinstance(t, str) else str(t.get("name")) for t in tools)
        out(f"{agent.get('name', ''):<12} {agent.get('description', '')}")
        if names:
            out(f"{'':<12} tools: {names}")
    return OK


# --- serve ---------------------------------------------------------------------------------------


@dataclass
class _PrintingNotifier:
    """Prints each approval link as it is sent, then hands it on (the stack keeps its record)."""

    inner: Notifier
    out: Callable[[str], None]

    def notify(self, approval: Approval, url: str) -> None:
        self.inner.notify(approval, url)
        what = approval.tool or approval.kind
        self.out(f"approval {approval.approval_id} for {approval.thread_id} ({what}): {url}")

    def alert(self, alert: Alert) -> None:
        self.inner.alert(alert)
        self.out(f"{alert.title}: {alert.detail} ({alert.url})")


def cmd_serve(args: argparse.Namespace, out: Callable[[str], None], err: Callable[[str], None]) -> int:
    try:
        from infra.local.http import serve  # noqa: PLC0415 - the local stack needs the dev extras
        from infra.local.mcp_server import example_mcp_servers  # noqa: PLC0415 - the mcp SDK (dev extras)
        from infra.local.stack import LocalStack  # noqa: PLC0415
    except ImportError as exc:
        err(f"error: `stepfold serve` needs the development extras ({exc}); run: pip install -e '.[dev,local]'")
        return API_ERROR
    generated = not os.environ.get("STEPFOLD_API_KEY")
    api_key = os.environ.get("STEPFOLD_API_KEY") or secrets.token_urlsafe(24)
    os.environ["STEPFOLD_API_KEY"] = api_key
    made = [name for name in LOCAL_WEBHOOK_SECRETS if not os.environ.get(name)]
    for name in made:  # so the README's signed curls work against this stack as soon as the export line is run
        os.environ[name] = secrets.token_urlsafe(24)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.verbose:
        logging.getLogger("infra.local.http").setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, _interrupt)
    # Quiet handlers: this terminal shows the URL and the approval links, not JSON logs and EMF metrics.
    env = {name: os.environ.get(name, value) for name, value in SERVE_QUIET.items()}
    with example_mcp_servers(out), LocalStack(env=env) as stack:
        stack.rt.notifier = _PrintingNotifier(stack.notifier, out)
        scheduler = None
        try:
            server, url = serve(stack, args.host, args.port)
        except OSError as exc:
            err(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); choose another --port")
            return API_ERROR
        try:
            out("stepfold local stack: moto DynamoDB/S3/Lambda/Step Functions, the real agent_loop.asl.json")
            out(f"url:     {url}")
            out(f"api key: {api_key}" + ("  (generated; set STEPFOLD_API_KEY to choose one)" if generated else ""))
            out(f"  export STEPFOLD_URL={url} STEPFOLD_API_KEY={api_key}")
            out(
                "webhook secrets"
                + (" (generated; set them to choose)" if made else "")
                + ": for POST /webhooks/{github,slack,shop}"
            )
            out("  export " + " ".join(f"{name}={os.environ[name]}" for name in LOCAL_WEBHOOK_SECRETS))
            out("approval links are printed here as they are sent. Ctrl-C stops (and forgets every thread).")
            scheduler = _start_schedules(stack, args.schedules, out)
            threading.Event().wait()
        except KeyboardInterrupt:
            out("stopping")
        finally:
            if scheduler is not None:
                scheduler.stop()
            server.close()
    return OK


def _start_schedules(stack: LocalStack, mode: str, out: Callable[[str], None]) -> Scheduler | None:
    """EventBridge Scheduler for template.yaml's schedules, printing each delivery (``--schedules``)."""
    from core.services.triggers import iso  # noqa: PLC0415
    from infra.local.events import Scheduler, fire  # noqa: PLC0415 - the local stack needs the dev extras

    if mode == "off":
        return None

    def fired(schedule: TemplateSchedule, at: datetime, result: object) -> None:
        threads = result.get("threads", []) if isinstance(result, dict) else []
        started = ", ".join(str(t.get("thread_id")) for t in threads) or json.dumps(result)[:200]
        out(f"schedule {schedule.label} fired for {iso(at)}: {started}")

    scheduler = Scheduler(stack, on_fire=fired)
    if mode == "now":
        now = datetime.now(UTC)
        for schedule in scheduler.schedules:
            at = schedule.schedule.previous_fire(now) or now.replace(second=0, microsecond=0)
            fired(schedule, at, fire(stack, schedule, at))
    return scheduler.start()


def bash_completion(full: argparse.ArgumentParser) -> str:
    """A bash completion script for every command and its options, derived from the parser itself."""
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    commands: dict[str, list[str]] = {}
    for name, command in sub.choices.items():
        options = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
        choices = [str(c) for a in command._actions if not a.option_strings and a.choices for c in a.choices]
        commands[name] = sorted(set(options)) + choices
    cases = "\n".join(f'        {name}) words="{" ".join(words)}" ;;' for name, words in sorted(commands.items()))
    return f"""# stepfold bash completion: eval "$(stepfold completion bash)", or save it for bash-completion
_stepfold() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" command="" words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --url) ((i++)) ;;
            -*) ;;
            *) command="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    if [[ -z "$command" ]]; then
        COMPREPLY=($(compgen -W "{" ".join(sorted(commands))} --url --version --help" -- "$cur"))
        return
    fi
    case "$command" in
{cases}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _stepfold stepfold"""


def _interrupt(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt


# --- the parser ----------------------------------------------------------------------------------


EXTENSIONS = {
    "export": "infra.cli_evals",
    "eval": "infra.cli_evals",
    "replay": "infra.cli_evals",
    "fork": "infra.cli_evals",
    "context": "infra.cli_views",
    "schedules": "infra.cli_triggers",
    "trigger-schedule": "infra.cli_triggers",
    "put-event": "infra.cli_triggers",
}
"""Commands other modules add with their ``register(subparsers)``. They import the agents and the kernel, so
they are loaded only for their own commands or the full ``--help``: the API commands start in a fraction."""


class _VersionAction(argparse.Action):
    """``--version``: reads the installed distribution only when asked (the API commands start in a fraction)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"stepfold {_version()}")  # on stdout, like argparse's own version action
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - only for --version and --help

    try:
        return version("stepfold")
    except PackageNotFoundError:
        return "(not installed: run `make setup`)"


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (skipping ``--url X``), or None."""
    words = iter(argv)
    for word in words:
        if word == "--url":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``stepfold`` parser; ``argv`` decides which :data:`EXTENSIONS` are loaded (all when None)."""
    p = argparse.ArgumentParser(
        prog="stepfold",
        description="Launch, follow and answer stepfold agents through the HTTP API.",
        epilog=f"STEPFOLD_URL (default {DEFAULT_URL}) and STEPFOLD_API_KEY say where and as whom.",
    )
    p.add_argument("--url", default=None, help=f"API base URL (default: $STEPFOLD_URL or {DEFAULT_URL})")
    p.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, helptext: str, *, json_flag: bool = False) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=helptext, description=helptext)
        if json_flag:
            c.add_argument("--json", action="store_true", help="machine-readable output")
        return c

    c = command("launch", "start a thread", json_flag=True)
    c.add_argument("agent")
    c.add_argument("input")
    c.add_argument("--idempotency-key", help="the same key returns the same thread")
    c.add_argument("--wait", action="store_true", help="follow the thread until it ends or waits for someone")
    c.add_argument("--timeout", type=float, default=None, help="with --wait: give up after this many seconds")
    c.set_defaults(run=cmd_launch)

    c = command("status", "a thread's folded state", json_flag=True)
    c.add_argument("thread_id")
    c.set_defaults(run=cmd_status)

    c = command("events", "a thread's steps; --follow keeps watching", json_flag=True)
    c.add_argument("thread_id")
    c.add_argument("--follow", "-f", action="store_true", help="poll until done, failed, paused or waiting")
    c.add_argument("--after", type=int, default=None, help="only events after this seq")
    c.add_argument("--timeout", type=float, default=None, help="with --follow: give up after this many seconds")
    c.set_defaults(run=cmd_events)

    for name, helptext, run in (
        ("approve", "approve the pending tool call", cmd_approve),
        ("reject", "reject the pending tool call; the model sees the reason", cmd_reject),
        ("answer", "answer the agent's question", cmd_answer),
    ):
        c = command(name, helptext, json_flag=True)
        c.add_argument("thread_id")
        if name == "answer":
            c.add_argument("text")
        elif name == "reject":
            c.add_argument("--reason", required=True)
        else:
            c.add_argument("--comment", default="")
        c.add_argument(
            "--note",
            "--by",
            dest="by",
            default=None,
            help="a note recorded with the decision, e.g. who you act for (the decider is always your API key)",
        )
        c.add_argument("--approval-id", default=None, help="the request to answer (default: the open one)")
        c.set_defaults(run=run)

    for action, helptext in (
        ("pause", "pause between steps"),
        ("resume", "resume a paused thread"),
        ("retry", "run a thread whose execution failed again, from where it stopped"),
        ("cancel", "end a thread for good"),
    ):
        c = command(action, helptext, json_flag=True)
        c.add_argument("thread_id")
        if action not in ("resume", "retry"):
            c.add_argument("--reason", default="")
        c.set_defaults(run=_control(action))

    c = command("message", "add input to a finished thread and run it again", json_flag=True)
    c.add_argument("thread_id")
    c.add_argument("text")
    c.set_defaults(run=cmd_message)

    c = command("list", "threads, newest first", json_flag=True)
    c.add_argument("--status", choices=("running", "awaiting_human", "paused", "done", "failed"))
    c.add_argument("--agent")
    c.add_argument("--cursor", help="the next_cursor of the previous page")
    c.set_defaults(run=cmd_list)

    c = command("agents", "the agents this stack runs", json_flag=True)
    c.set_defaults(run=cmd_agents)

    c = command("completion", 'print a bash completion script: eval "$(stepfold completion bash)"')
    c.add_argument("shell", choices=("bash",))
    c.set_defaults(run=None)

    c = command("serve", "run the local stack and its HTTP API on this machine")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8765)
    c.add_argument("--verbose", "-v", action="store_true", help="log every request")
    c.add_argument(
        "--schedules",
        choices=("on", "off", "now"),
        default="on",
        help="fire template.yaml's schedules at their times (on, the default), never (off), or also once at start "
        "for the last time each should have fired (now)",
    )
    c.set_defaults(run=None)

    word = None if argv is None else _command_word(argv)
    for module in dict.fromkeys(EXTENSIONS.values()):
        if word is None or EXTENSIONS.get(word) == module:
            importlib.import_module(module).register(sub)
    return p


def run(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Parse, run one command, and return its exit code (argparse itself exits 2 on bad usage)."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr

    def out(line: str) -> None:
        print(line, file=stdout, flush=True)

    def err(line: str) -> None:
        print(line, file=stderr, flush=True)

    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv).parse_args(argv)
    try:
        return _dispatch(args, out, err)
    except BrokenPipeError:  # `stepfold events --json | head`: the reader left; say nothing more
        _quiet_stdout(stdout)
        return OK
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, out: Callable[[str], None], err: Callable[[str], None]) -> int:
    if args.command == "serve":
        return cmd_serve(args, out, err)
    if args.command == "completion":
        out(bash_completion(parser()))
        return OK
    url = args.url or os.environ.get("STEPFOLD_URL") or DEFAULT_URL
    api = Api(url, os.environ.get("STEPFOLD_API_KEY"))
    try:
        code: int = args.run(api, args, out)
    except UnreachableError as exc:
        err(f"error: {exc}. Is the API running? Start the local one with `stepfold serve`, or set STEPFOLD_URL.")
        return UNREACHABLE
    except ApiError as exc:
        err(f"error: {exc.detail}")
        return API_ERROR
    finally:
        api.close()
    return code


def _quiet_stdout(stdout: TextIO) -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again (Python's documented
    recipe for SIGPIPE, https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test's StringIO)
        pass


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
