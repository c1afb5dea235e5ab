"""``stepfold export | eval | replay | fork``: own your prompts from the command line (Factor 2, 5).

- ``export ID [--at SEQ]`` turns a thread into an eval case (JSON on stdout, or ``--out``);
- ``eval AGENT [--prompt vN] [--model M] [--compare vA vB]`` runs ``evals/<agent>/*.json``: one model call per
  case, scripted by default, nothing written to any thread; exit 1 on a failed case (with ``--compare``: on a
  case the second version fails and the first passes);
- ``replay ID`` re-runs a thread's steps from its recorded model calls, running no tool, and exits 1 if
  today's code produces different events;
- ``fork ID --at SEQ [--prompt vN]`` starts a new thread from the first SEQ events (``POST /threads/{id}/fork``).

``export``, ``replay`` and ``fork`` read the thread through the HTTP API (``STEPFOLD_URL``, ``STEPFOLD_API_KEY``),
or from a thread JSON file with ``--from-file`` (offline; a fork is then written out as JSON, not started).
``register(subparsers)`` adds the commands to the ``stepfold`` parser; ``python -m infra.cli_evals`` runs them
on their own, plus ``eval-all`` (every agent with cases under ``evals/``: what ``make evals`` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from agents import AGENTS, build_llm
from core.adapters.llm import LLM, ProviderConfig
from core.adapters.store import MemoryThreadStore
from core.kernel.agent import Agent
from core.kernel.events import parse_event
from core.kernel.prompts import PromptError, PromptLibrary
from core.kernel.thread import Thread
from core.services.control import thread_id_for
from core.services.evals import CaseError, Report, compare, comparison_table, export, load_cases, run_eval
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


def _llm_for(model: str) -> LLM:
    """The model for an eval: scripted plays the agents package's brains; providers take their keys from the
    environment."""
    config = ProviderConfig(
        openai_base_url=os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        openai_api_key=os.environ.get("OPENAI_API_KEY"),
        anthropic_api_key=os.environ.get("ANTHROPIC_API_KEY"),
    )
    if model.startswith("bedrock:"):
        import boto3  # noqa: PLC0415 - only a Bedrock eval needs it

        config = ProviderConfig(bedrock_client=boto3.client("bedrock-runtime"))
    return build_llm(model, config)


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
    """Run an agent's eval cases with a prompt version and a model."""
    del api  # evals run here, against the model, never through the API
    try:
        return run_agent_evals(
            args.agent,
            cases_dir=Path(args.cases) if args.cases else None,
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
    """Every agent that has cases under the evals directory, with its pinned prompt and scripted model."""
    del api
    root = Path(args.root)
    dirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not dirs:
        _err(f"error: no eval cases under {root}")
        return USAGE
    code = OK
    for directory in dirs:
        try:
            result = run_agent_evals(
                directory.name, cases_dir=directory, concurrency=args.concurrency, model=args.model, out=out
            )
        except (CaseError, PromptError) as exc:
            _err(f"error: {exc}")
            return USAGE
        code = max(code, result)
        out("")
    out("evals: all cases pass" if code == OK else "evals: FAILED (see the tables above)")
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
