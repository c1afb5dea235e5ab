"""``stepfold export | eval | replay | fork``: own your prompts from the command line (Factor 2, 5).

- ``export ID [--at SEQ]`` turns a thread into an eval case (JSON on stdout, or ``--out``);
- ``eval AGENT [--prompt vN] [--model M] [--compare vA vB]`` runs ``evals/<agent>/*.json``: one model call per
  case, scripted by default, nothing written to any thread; exit 1 on a failed case (with ``--compare``: on a
  case the second version fails and the first passes);
- ``eval AGENT --record MODEL`` runs the cases against a real provider (``openai:`` or ``anthropic:``, keys and
  base URLs from ``OPENAI_API_KEY``/``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL``) and writes
  each case's raw HTTP exchange to ``evals/<agent>/cassettes/<case>.json``; ``eval AGENT --cassettes`` replays
  them through the same adapter, offline (core/services/evals.py, "Cassettes", says what a replay proves); a
  stale or missing cassette is shown, and fails the run with ``--strict``;
- ``replay ID`` re-runs a thread's steps from its recorded model calls, running no tool, and exits 1 if
  today's code produces different events;
- ``fork ID --at SEQ [--prompt vN]`` starts a new thread from the first SEQ events (``POST /threads/{id}/fork``).

``export``, ``replay`` and ``fork`` read the thread through the HTTP API (``STEPFOLD_URL``, ``STEPFOLD_API_KEY``),
or from a thread JSON file with ``--from-file`` (offline; a fork is then written out as JSON, not started).
``register(subparsers)`` adds the commands to the ``stepfold`` parser; ``python -m infra.cli_evals`` runs them
on their own, plus ``eval-all`` (every agent with cases under ``evals/``, with the scripted model and, where an
agent has cassettes, replaying them: what ``make evals`` runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx

from agents import AGENTS, build_llm
from core.adapters.llm import LLM, ModelStringError, ProviderConfig, parse_model_string
from core.adapters.store import MemoryThreadStore
from core.kernel.agent import Agent
from core.kernel.events import parse_event
from core.kernel.prompts import PromptError, PromptLibrary
from core.kernel.thread import Thread
from core.services.control import thread_id_for
from core.services.evals import (
    Case,
    CaseError,
    Cassette,
    Exchange,
    RecordedRequest,
    RecordedResponse,
    Report,
    Tape,
    compare,
    comparison_table,
    export,
    load_cases,
    load_cassettes,
    record_eval,
    replay_eval,
    run_eval,
)
from core.services.replay import ForkError, fork, replay

ROOT = Path(__file__).resolve().parent.parent
EVALS = ROOT / "evals"
DEFAULT_URL = "http://127.0.0.1:8765"
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3

Out = Callable[[str], None]


class Api(Protocol):
    """What these commands need of ``infra.cli.Api``: one JSON call, raising its ApiError / UnreachableError."""

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any: ...


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _version(text: str) -> int:
    """``v2`` or ``2``."""
    digits = text.strip().lower().removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"a prompt version looks like v2 or 2, got {text!r}")
    return int(digits)


def _agent(name: str) -> Agent:
    if name not in AGENTS:
        raise CaseError(f"unknown agent {name!r}; available: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]


# --- reading a thread ----------------------------------------------------------------------------------------


def read_thread_file(path: str) -> Thread:
    """A thread saved as JSON (``{id, agent, events, labels}``, what ``Thread.to_json`` writes); ``-`` is stdin."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return Thread.from_json(text)
    except ValueError as exc:
        raise CaseError(f"{path}: not a thread JSON file ({exc})") from None


def fetch_thread(api: Api, thread_id: str) -> Thread:
    """The whole thread through the API: its summary (agent, labels), then its events page by page."""
    summary = api.call("GET", f"/threads/{thread_id}")
    events: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = api.call("GET", f"/threads/{thread_id}/events", params={"after": after})
        fresh = [e for e in page.get("events", []) if after is None or int(e.get("seq", -1)) > after]
        events.extend(fresh)
        if not fresh or ("next_after" in page and page["next_after"] is None):
            break
        after = max(int(e["seq"]) for e in fresh)
    return Thread(
        id=thread_id,
        agent=str(summary["agent"]),
        events=tuple(parse_event(e, thread_id=thread_id) for e in events),
        labels={str(k): str(v) for k, v in (summary.get("labels") or {}).items()},
    )


def _load(api: Api, args: argparse.Namespace) -> Thread:
    if args.from_file:
        return read_thread_file(args.from_file)
    if not args.thread_id:
        raise CaseError("name a thread id, or give --from-file")
    return fetch_thread(api, args.thread_id)


def _write(text: str, path: str | None, out: Out) -> None:
    if path:
        Path(path).write_text(text, encoding="utf-8")
    else:
        out(text.rstrip("\n"))


# --- commands ------------------------------------------------------------------------------------------------


def cmd_export(api: Api, args: argparse.Namespace, out: Out) -> int:
    """Write an eval case made from a thread."""
    try:
        thread = _load(api, args)
        keep = None if args.expect_args is None else [a.strip() for a in args.expect_args.split(",") if a.strip()]
        case = export(
            thread,
            args.at,
            keep_args=[] if args.tool_only else keep,
            predicate=args.predicate,
            description=args.description,
        )
    except CaseError as exc:
        _err(f"error: {exc}")
        return FAILED
    _write(case.to_json(), args.out, out)
    return OK


def _provider_config(environ: Mapping[str, str] | None = None) -> ProviderConfig:
    """The httpx providers' keys and base URLs from the environment (the CLI's, never the Lambda's wiring)."""
    env = os.environ if environ is None else environ
    default = ProviderConfig()
    return ProviderConfig(
        openai_base_url=env.get("OPENAI_BASE_URL") or default.openai_base_url,
        openai_api_key=env.get("OPENAI_API_KEY"),
        anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or default.anthropic_base_url,
        anthropic_api_key=env.get("ANTHROPIC_API_KEY"),
    )


def _llm_for(model: str) -> LLM:
    """The model for an eval: scripted plays the agents package's brains; providers take their keys from the
    environment."""
    config = _provider_config()
    if model.startswith("bedrock:"):
        import boto3  # noqa: PLC0415 - only a Bedrock eval needs it

        config = ProviderConfig(bedrock_client=boto3.client("bedrock-runtime"))
    return build_llm(model, config)


# --- cassettes: recording and replaying the HTTP exchanges ---------------------------------------------------

RECORDABLE = ("openai", "anthropic")
"""The providers whose adapters take an httpx client; Bedrock goes through boto3 and is not recorded."""

KEPT_HEADERS = frozenset(
    {"content-type", "retry-after", "retry-after-ms", "x-should-retry", "location", "x-request-id", "request-id"}
)
"""The response headers a cassette keeps: the ones the adapters read (core/adapters/llm/_http.py), and the
provider's request id for whoever reviews it. Request headers are never kept: they carry the API key."""


def _json_or_text(content: bytes) -> tuple[Any, str | None]:
    """A body as (JSON value, None), or (None, text) when it is not JSON."""
    try:
        return json.loads(content), None
    except (ValueError, UnicodeDecodeError):
        return None, content.decode("utf-8", "replace")


def recorded_request(request: httpx.Request) -> RecordedRequest:
    body, text = _json_or_text(request.read())
    return RecordedRequest(method=request.method, url=str(request.url), body=body if text is None else text)


class CassetteRecorder(httpx.BaseTransport):
    """An httpx transport that sends each request on through ``network`` (a plain client, shared by every case,
    so proxies from the environment apply and one TLS context serves all) and adds the exchange to ``tape``.
    A request that got no response (a timeout, a refused connection) adds nothing."""

    def __init__(self, tape: Tape, network: httpx.Client) -> None:
        self._tape = tape
        self._network = network

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = recorded_request(request)
        response = self._network.send(request)
        body, text = _json_or_text(response.read())
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() in KEPT_HEADERS}
        self._tape.add(
            Exchange(
                request=sent,
                response=RecordedResponse(status=response.status_code, headers=headers, body=body, text=text),
            )
        )
        return response


class CassettePlayer(httpx.BaseTransport):
    """An httpx transport that answers every request from ``tape`` (a cassette), never touching the network."""

    def __init__(self, tape: Tape) -> None:
        self._tape = tape

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        recorded = self._tape.answer(recorded_request(request))
        content = recorded.text.encode() if recorded.text is not None else json.dumps(recorded.body).encode()
        return httpx.Response(recorded.status, headers=recorded.headers, content=content, request=request)


@contextlib.contextmanager
def taped_models(
    config_for: Callable[[Tape], ProviderConfig],
    transport_for: Callable[[Tape], httpx.BaseTransport],
    model_for: Callable[[Tape], str],
) -> Iterator[Callable[[Tape], LLM]]:
    """``llm_for_tape`` for :func:`record_eval` / :func:`replay_eval`: the real provider adapter of each tape,
    over its own httpx client on ``transport_for(tape)``; the clients are closed when the block ends.

    The clients ignore proxy variables (``trust_env=False``): httpx mounts a proxy's transport in front of the one
    given, which would send a replay to the network and a recording past its recorder.
    """
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def build(tape: Tape) -> LLM:
        config = config_for(tape)
        client = httpx.Client(transport=transport_for(tape), timeout=_timeout(config), trust_env=False)
        with lock:
            clients.append(client)
        return build_llm(model_for(tape), replace(config, http_client=client))

    try:
        yield build
    finally:
        for client in clients:
            client.close()


def _timeout(config: ProviderConfig) -> httpx.Timeout:
    return httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)


def _recordable(model: str) -> str:
    """The provider of a model --record can record, or a CaseError saying why not."""
    try:
        provider, _ = parse_model_string(model)
    except ModelStringError as exc:
        raise CaseError(str(exc)) from None
    if provider not in RECORDABLE:
        why = "a scripted brain is not a model" if provider == "scripted" else "bedrock goes through boto3, not httpx"
        raise CaseError(f"cassettes record the HTTP providers ({', '.join(RECORDABLE)}), not {model!r}: {why}")
    return provider


def _cases_of(agent_name: str, cases_dir: Path | None) -> tuple[Agent, list[Case], Path]:
    agent = _agent(agent_name)
    directory = cases_dir or EVALS / agent_name
    cases = load_cases(directory)
    if not cases:
        raise CaseError(f"no cases in {directory}; export some with `stepfold export`")
    return agent, cases, directory


def record_agent_evals(
    agent_name: str,
    model: str,
    *,
    cases_dir: Path | None = None,
    prompt_version: int | None = None,
    concurrency: int = 4,
    as_json: bool = False,
    out: Out,
    config: ProviderConfig | None = None,
    now: datetime | None = None,
    prompts: PromptLibrary | None = None,
) -> int:
    """Run an agent's cases against ``model`` through its real adapter and write one cassette per case.

    ``config`` defaults to the environment's keys and base URLs. Exit 1 if a case failed or could not be
    recorded.
    """
    provider = _recordable(model)
    agent, cases, directory = _cases_of(agent_name, cases_dir)
    config = config or _provider_config()
    base_url = config.openai_base_url if provider == "openai" else config.anthropic_base_url
    with (
        httpx.Client(timeout=_timeout(config)) as network,
        taped_models(lambda tape: config, lambda tape: CassetteRecorder(tape, network), lambda tape: model) as llm,
    ):
        recording = record_eval(
            agent,
            cases,
            model=model,
            base_url=base_url,
            llm_for_tape=llm,
            recorded_at=now,
            prompts=prompts,
            prompt_version=prompt_version,
            concurrency=concurrency,
        )
    folder = directory / "cassettes"
    written: list[str] = []
    if recording.cassettes:
        folder.mkdir(parents=True, exist_ok=True)
    for name, cassette in recording.cassettes.items():
        path = folder / f"{name}.json"
        path.write_text(cassette.to_json(), encoding="utf-8")
        written.append(str(path))
    report = recording.report
    if as_json:
        out(json.dumps({"report": report.to_dict(), "written": written, "skipped": recording.skipped}, indent=2))
    else:
        out(report.table())
        if written:
            out(
                f"wrote {len(written)} cassette(s) to {folder} ({model}, {report.prompt} {report.prompt_hash[:12]}); "
                "review them (git diff) before committing"
            )
        for name, why in recording.skipped.items():
            out(f"not recorded: {name}: {why}")
    return OK if report.ok and not recording.skipped else FAILED


def _cassette(tape: Tape) -> Cassette:
    if tape.cassette is None:
        raise ValueError("a replay needs a tape made from a cassette")
    return tape.cassette


def _replay_config(tape: Tape) -> ProviderConfig:
    """The adapter's configuration at recording time, minus the keys: the request it builds is the one it built."""
    cassette = _cassette(tape)
    return ProviderConfig(
        openai_base_url=cassette.base_url,
        anthropic_base_url=cassette.base_url,
        openai_api_key="replayed-from-a-cassette",
        anthropic_api_key="replayed-from-a-cassette",
    )


def replay_report(
    agent_name: str,
    *,
    cases_dir: Path | None = None,
    prompt_version: int | None = None,
    concurrency: int = 4,
    prompts: PromptLibrary | None = None,
) -> tuple[Report, list[str]]:
    """Replay an agent's cassettes through the real adapters, offline: the report, and a line for each cassette
    whose case is gone."""
    agent, cases, directory = _cases_of(agent_name, cases_dir)
    folder = directory / "cassettes"
    cassettes = load_cassettes(folder)
    if not cassettes:
        raise CaseError(f"no cassettes in {folder}; record them with `stepfold eval {agent_name} --record MODEL`")
    for cassette in cassettes.values():
        _recordable(cassette.model)
    with taped_models(_replay_config, CassettePlayer, lambda tape: _cassette(tape).model) as llm:
        report = replay_eval(
            agent,
            cases,
            cassettes,
            llm_for_tape=llm,
            prompts=prompts,
            prompt_version=prompt_version,
            concurrency=concurrency,
        )
    orphans = [
        f"{folder / name}.json: no case {name} in {directory}; delete the cassette"
        for name in sorted(set(cassettes) - {c.name for c in cases})
    ]
    return report, orphans


def replay_agent_evals(
    agent_name: str,
    *,
    cases_dir: Path | None = None,
    prompt_version: int | None = None,
    concurrency: int = 4,
    as_json: bool = False,
    strict: bool = False,
    out: Out,
    prompts: PromptLibrary | None = None,
) -> int:
    """Replay and print; exit 1 on a failed case or, with ``strict``, on a stale or missing cassette."""
    report, orphans = replay_report(
        agent_name, cases_dir=cases_dir, prompt_version=prompt_version, concurrency=concurrency, prompts=prompts
    )
    if as_json:
        out(json.dumps({**report.to_dict(), "orphans": orphans}, indent=2))
    else:
        _print_replay(report, orphans, out)
    return FAILED if not report.ok or (strict and report.unverified) else OK


def _print_replay(report: Report, orphans: Sequence[str], out: Out) -> None:
    out(report.table())
    for line in orphans:
        out(f"  {line}")
    if report.unverified:
        out(f"  re-record: stepfold eval {report.agent} --record {report.model}")


def run_agent_evals(
    agent_name: str,
    *,
    cases_dir: Path | None = None,
    prompt_version: int | None = None,
    compare_versions: Sequence[int] | None = None,
    model: str | None = None,
    concurrency: int = 4,
    as_json: bool = False,
    out: Out,
    llm_for: Callable[[str], LLM] = _llm_for,
    prompts: PromptLibrary | None = None,
) -> int:
    """Run one agent's cases and print the table (or the changed decisions); the exit code says if any regressed."""
    agent = _agent(agent_name)
    cases = load_cases(cases_dir or EVALS / agent_name)
    if not cases:
        raise CaseError(f"no cases in {cases_dir or EVALS / agent_name}; export some with `stepfold export`")
    prompts = prompts or PromptLibrary()

    def run(version: int | None) -> Report:
        return run_eval(
            agent,
            cases,
            prompts=prompts,
            llm_for=llm_for,
            prompt_version=version,
            model=model,
            concurrency=concurrency,
        )

    if compare_versions:
        before, after = (run(v) for v in compare_versions)
        changes = compare(before, after)
        if as_json:
            payload = {
                "before": before.to_dict(),
                "after": after.to_dict(),
                "changes": [
                    {"case": c.case, "kind": c.kind, "before": c.before.got, "after": c.after.got} for c in changes
                ],
            }
            out(json.dumps(payload, indent=2))
        else:
            out(before.summary())
            out(after.table())
            out("")
            out(comparison_table(before, after))
        return FAILED if any(c.kind == "regression" for c in changes) else OK
    report = run(prompt_version)
    out(json.dumps(report.to_dict(), indent=2) if as_json else report.table())
    return OK if report.ok else FAILED


def cmd_eval(api: Api, args: argparse.Namespace, out: Out) -> int:
    """Run an agent's eval cases with a prompt version and a model; record them as cassettes, or replay those."""
    del api  # evals run here, against the model, never through the API
    cases_dir = Path(args.cases) if args.cases else None
    try:
        if args.strict and not args.cassettes:
            raise CaseError("--strict applies to a replay: give --cassettes too")
        if args.record or args.cassettes:
            flag = "--record" if args.record else "--cassettes"
            clash = [f for f, given in (("--compare", args.compare), ("--model", args.model)) if given]
            if args.record and args.cassettes:
                clash.append("--cassettes")
            if clash:
                raise CaseError(
                    f"{flag} does not go with {', '.join(clash)}: a recording uses its MODEL, a replay the model "
                    "its cassettes were recorded with; compare prompt versions by recording each"
                )
        if args.record:
            return record_agent_evals(
                args.agent,
                args.record,
                cases_dir=cases_dir,
                prompt_version=args.prompt,
                concurrency=args.concurrency,
                as_json=args.json,
                out=out,
            )
        if args.cassettes:
            return replay_agent_evals(
                args.agent,
                cases_dir=cases_dir,
                prompt_version=args.prompt,
                concurrency=args.concurrency,
                as_json=args.json,
                strict=args.strict,
                out=out,
            )
        return run_agent_evals(
            args.agent,
            cases_dir=cases_dir,
            prompt_version=args.prompt,
            compare_versions=args.compare,
            model=args.model,
            concurrency=args.concurrency,
            as_json=args.json,
            out=out,
        )
    except (CaseError, PromptError) as exc:
        _err(f"error: {exc}")
        return USAGE


def cmd_eval_all(api: Api, args: argparse.Namespace, out: Out) -> int:
    """Every agent that has cases under the evals directory, with its pinned prompt and scripted model; an agent
    with cassettes (``<agent>/cassettes/*.json``) also has them replayed through the real adapters."""
    del api
    root = Path(args.root)
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not dirs:
        _err(f"error: no eval cases under {root}")
        return USAGE
    code = OK
    unverified = 0
    for directory in dirs:
        try:
            result = run_agent_evals(
                directory.name, cases_dir=directory, concurrency=args.concurrency, model=args.model, out=out
            )
            out("")
            if any((directory / "cassettes").glob("*.json")):
                report, orphans = replay_report(directory.name, cases_dir=directory, concurrency=args.concurrency)
                _print_replay(report, orphans, out)
                out("")
                unverified += len(report.unverified)
                result = max(result, FAILED if not report.ok or (args.strict and report.unverified) else OK)
        except (CaseError, PromptError) as exc:
            _err(f"error: {exc}")
            return USAGE
        code = max(code, result)
    if code != OK:
        out("evals: FAILED (see the tables above)")
    elif unverified:
        out(f"evals: all cases pass, but {unverified} replayed cases are STALE or have no cassette: re-record them")
    else:
        out("evals: all cases pass")
    return code


def cmd_replay(api: Api, args: argparse.Namespace, out: Out) -> int:
    """Re-run a thread's steps from its recorded model calls with today's code; no tool runs."""
    try:
        thread = _load(api, args)
        result = replay(thread, _agent(thread.agent))
    except (CaseError, PromptError) as exc:
        _err(f"error: {exc}")
        return FAILED
    if args.json:
        d = result.difference
        out(
            json.dumps(
                {
                    "thread_id": result.thread_id,
                    "ok": result.ok,
                    "steps": result.steps,
                    "difference": None
                    if d is None
                    else {
                        "seq": d.seq,
                        "recorded": None if d.recorded is None else d.recorded.model_dump(mode="json"),
                        "replayed": None if d.replayed is None else d.replayed.model_dump(mode="json"),
                        "note": d.note,
                    },
                },
                indent=2,
            )
        )
    else:
        out(result.render())
    return OK if result.ok else FAILED


def cmd_fork(api: Api, args: argparse.Namespace, out: Out) -> int:
    """Start a new thread from the first SEQ events of another (through the API, or offline from a file)."""
    if args.from_file:
        try:
            original = read_thread_file(args.from_file)
            store = MemoryThreadStore()
            store.create(original)
            forked = fork(
                store,
                original.id,
                args.at,
                new_id=thread_id_for(original.agent, None),
                prompt_version=args.prompt,
                agents=AGENTS,
                prompts=PromptLibrary(),
            )
        except (CaseError, ForkError) as exc:
            _err(f"error: {exc}")
            return FAILED
        _write(forked.to_json() + "\n", args.out, out)
        return OK
    if not args.thread_id:
        _err("error: name a thread id, or give --from-file")
        return USAGE
    body: dict[str, Any] = {"at": args.at}
    if args.prompt is not None:
        body["prompt_version"] = args.prompt
    created = api.call("POST", f"/threads/{args.thread_id}/fork", body=body)
    if args.json:
        out(json.dumps(created, indent=2))
        return OK
    new = created.get("thread_id")
    pinned = f", prompt v{args.prompt}" if args.prompt is not None else ""
    out(f"{new}  forked from {args.thread_id} at seq {args.at}{pinned}  {created.get('status', '')}".rstrip())
    out(f"   follow it: stepfold events {new} --follow")
    return OK


# --- the parser ----------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``export``, ``eval``, ``replay`` and ``fork`` to the ``stepfold`` subparsers (``set_defaults(run=...)``,
    called as ``run(api, args, out)`` like every other command)."""

    def thread_source(c: argparse.ArgumentParser) -> None:
        c.add_argument("thread_id", nargs="?", help="the thread (read through the API)")
        c.add_argument("--from-file", metavar="PATH", help="read the thread from a JSON file instead ('-': stdin)")

    c = sub.add_parser("export", help="turn a thread into an eval case", description=cmd_export.__doc__)
    thread_source(c)
    c.add_argument("--at", type=int, default=None, help="the first model call at or after this seq (default: first)")
    c.add_argument("--expect-args", metavar="A,B", help="pin only these arguments (default: all of them)")
    c.add_argument("--tool-only", action="store_true", help="pin only the tool, no arguments")
    c.add_argument("--predicate", help="e.g. \"args.environment == 'staging'\"")
    c.add_argument("--description", help="what the case checks (default: where it came from)")
    c.add_argument("--out", "-o", metavar="PATH", help="write the case here instead of stdout")
    c.set_defaults(run=cmd_export)

    c = sub.add_parser("eval", help="run an agent's eval cases", description=cmd_eval.__doc__)
    c.add_argument("agent")
    c.add_argument("--prompt", type=_version, default=None, help="prompt version, e.g. v2 (default: the agent's)")
    c.add_argument("--model", default=None, help="provider:model (default: the agent's, scripted for the examples)")
    c.add_argument("--compare", nargs=2, type=_version, metavar=("vA", "vB"), help="show the decisions vB changes")
    c.add_argument("--concurrency", type=int, default=4, help="model calls in flight at once (default 4)")
    c.add_argument("--cases", metavar="DIR", help="cases directory (default: evals/<agent>)")
    c.add_argument(
        "--record",
        metavar="MODEL",
        help="run the cases against this provider model (openai:... or anthropic:..., keys from the environment) "
        "and write each exchange to <cases>/cassettes/<case>.json",
    )
    c.add_argument(
        "--cassettes", action="store_true", help="replay <cases>/cassettes through the real adapter, offline"
    )
    c.add_argument("--strict", action="store_true", help="with --cassettes: a stale or missing cassette fails")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_eval)

    c = sub.add_parser("replay", help="re-run a thread from its recorded model calls", description=cmd_replay.__doc__)
    thread_source(c)
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_replay)

    c = sub.add_parser("fork", help="start a new thread from a thread's first SEQ events", description=cmd_fork.__doc__)
    thread_source(c)
    c.add_argument("--at", type=int, required=True, help="how many events to copy (the fork goes on from there)")
    c.add_argument("--prompt", type=_version, default=None, help="pin this prompt version for the fork, e.g. v2")
    c.add_argument("--out", "-o", metavar="PATH", help="with --from-file: write the fork's JSON here")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_fork)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infra.cli_evals", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help=f"API base URL (default: $STEPFOLD_URL or {DEFAULT_URL})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register(sub)
    c = sub.add_parser("eval-all", help="every agent's cases under --root (what `make evals` runs)")
    c.add_argument("--root", default=str(EVALS), help="directory of evals/<agent>/*.json (default: evals/)")
    c.add_argument("--model", default=None, help="provider:model (default: each agent's own)")
    c.add_argument("--concurrency", type=int, default=4)
    c.add_argument("--strict", action="store_true", help="a stale or missing cassette fails the run")
    c.set_defaults(run=cmd_eval_all)
    return p


def run(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    from infra import cli  # noqa: PLC0415 - infra.cli imports this module

    stream = stdout or sys.stdout

    def out(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    args = parser().parse_args(argv)
    api = cli.Api(args.url or os.environ.get("STEPFOLD_URL") or DEFAULT_URL, os.environ.get("STEPFOLD_API_KEY"))
    try:
        code: int = args.run(api, args, out)
    except cli.UnreachableError as exc:
        _err(f"error: {exc}. Is the API running? Start the local one with `stepfold serve`, or set STEPFOLD_URL.")
        return UNREACHABLE
    except cli.ApiError as exc:
        _err(f"error: {exc.detail}")
        return FAILED
    finally:
        api.close()
    return code


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
