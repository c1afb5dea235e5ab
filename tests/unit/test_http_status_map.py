"""HTTP statuses belong to handlers (ARCHITECTURE.md): derived from the code, like tests/infra/test_error_contract.py.

``core/`` exceptions carry no HTTP status; each handler module maps exception types to its answers in one table.
This walks every exception class defined in ``core/services/`` (each module imported) and, for each handler, the
ones that can reach it: those defined in a ``core/services`` module the handler imports, directly or through
another such module (read with :mod:`ast`), and every subclass of those anywhere. Each must have a row (its own or
a base's, the lookup walks the MRO) with an error status, unless the handler lists it below as one that never
reaches it, saying why. A new service exception a route, a page or a webhook can meet therefore fails here until
its handler says how to answer it, instead of going out as a 500 (or worse, a success).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest

import core.services
import functions.routes
from core.services.approvals import ApprovalError, InvalidDecisionError, LinkExpiredError
from core.services.control import ControlError, InputTooLargeError, WrongStateError
from core.services.evals import CaseError
from core.services.notify import NotifyError
from core.services.replay import ForkError, ReplayExhaustedError
from core.services.replies import ReplyError
from core.services.triggers import (
    BadDeliveryError,
    SignatureError,
    TriggerError,
    UnknownSourceError,
    WebhookAccepted,
    WebhookOutcome,
    WebhookRefused,
)
from functions import api, approvals, triggers
from functions._statuses import lookup
from functions.routes import errors


def _service_modules() -> dict[str, Path]:
    found = {}
    for info in pkgutil.walk_packages(core.services.__path__, prefix="core.services."):
        spec = importlib.util.find_spec(info.name)
        assert spec is not None
        assert spec.origin is not None
        found[info.name] = Path(spec.origin)
    return found


SERVICES = _service_modules()


def _service_errors() -> list[type[BaseException]]:
    """Every exception class defined in core/services/ (each module imported)."""
    found: list[type[BaseException]] = []
    for name in SERVICES:
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


def _imported_services(path: Path) -> set[str]:
    """The core/services modules a source file imports (``from core.services import x`` names module x)."""
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return named & set(SERVICES)


def _reachable_services(entry_points: Iterable[Path]) -> set[str]:
    """The core/services modules the entry points import, and the ones those import, transitively."""
    todo = set().union(*(_imported_services(path) for path in entry_points))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= _imported_services(SERVICES[name]) - seen
    return seen


def _subclasses(cls: type[BaseException]) -> Iterable[type[BaseException]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _ours(cls: type[BaseException]) -> bool:
    """Defined in core/ or functions/ (not a subclass some test made)."""
    return cls.__module__.startswith(("core.", "functions."))


def _module_path(module: Any) -> Path:
    return Path(module.__file__)


@dataclass(frozen=True)
class Handler:
    """One front door: its source files, its table, and the service errors that never reach it (and why)."""

    name: str
    sources: tuple[Path, ...]
    table: Mapping[type[Any], tuple[int, str]]
    never: Mapping[type[BaseException], str]

    def reachable(self) -> list[type[BaseException]]:
        """Our exception classes that can reach the handler. A BaseException that is no Exception is control flow
        (replay's ``_NotRecorded``), which no handler catches: it is left out."""
        modules = _reachable_services(self.sources)
        roots = [cls for cls in _service_errors() if cls.__module__ in modules]
        found = (sub for root in roots for sub in _subclasses(root))
        return list(dict.fromkeys(cls for cls in found if issubclass(cls, Exception) and _ours(cls)))

    def exempt(self, cls: type[BaseException]) -> bool:
        return any(issubclass(cls, never) for never in self.never)


HANDLERS = [
    Handler(
        "the HTTP API (functions/routes/errors.py ANSWERS)",
        (_module_path(api), *sorted(Path(functions.routes.__path__[0]).glob("*.py"))),
        errors.ANSWERS,
        {
            ReplayExhaustedError: "raised by ReplayLLM inside replay.replay, which reports it as the difference; "
            "the routes call replay.fork only",
        },
    ),
    Handler(
        "the approval pages (functions/approvals.py REFUSALS)",
        (_module_path(approvals),),
        approvals.REFUSALS,
        {
            NotifyError: "the pages use notify's formatting (args_json, redact), which sends nothing",
        },
    ),
    Handler(
        "webhooks (functions/triggers.py REFUSED)",
        (_module_path(triggers),),
        triggers.REFUSED,
        {
            ApprovalError: "a delivery decides no approval; notify imports approvals for the Approval type only",
            NotifyError: "triggers reads notify's signature header and tolerance only; it notifies no one",
            ReplyError: "triggers reads replies' ReplyFormat only; replies are sent when a thread ends",
        },
    ),
]
"""What each handler answers. ``never`` lists the service errors (and their subclasses) that cannot reach it."""


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda h: h.name)
def test_every_service_error_that_can_reach_a_handler_has_an_error_status(handler: Handler) -> None:
    reachable = handler.reachable()
    assert reachable, f"found no service errors for {handler.name}: the derivation is broken"
    unmapped, not_errors = [], []
    for cls in reachable:
        if handler.exempt(cls):
            continue
        found = lookup(handler.table, cls)
        if found is None:
            unmapped.append(f"{cls.__module__}.{cls.__qualname__}")
        elif not 400 <= found[0] <= 599:
            not_errors.append(f"{cls.__qualname__}: {found[0]}")
    assert not unmapped, (
        f"{handler.name} has no row for {unmapped}: it would answer them as its own failure (500). Map each to the "
        "status that fits (or, if it truly cannot reach this handler, say why in the test's `never`)"
    )
    assert not not_errors, f"{handler.name} answers refusals with a non-error status: {not_errors}"


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda h: h.name)
def test_what_a_handler_says_it_never_meets_is_reachable_and_unmapped(handler: Handler) -> None:
    """An exemption that no longer matches anything, or that the table maps anyway, is stale: remove it."""
    reachable = handler.reachable()
    for never in handler.never:
        assert any(issubclass(cls, never) for cls in reachable), f"{never.__name__} no longer reaches {handler.name}"
        assert lookup(handler.table, never) is None, f"{handler.name} maps {never.__name__}; drop the exemption"


def test_the_derivation_sees_what_each_handler_imports() -> None:
    """The three front doors reach the services they call (the walk above is not vacuous)."""
    routes, pages, webhooks = HANDLERS
    assert {ControlError, ForkError, ApprovalError} <= set(routes.reachable())
    assert TriggerError not in routes.reachable()
    assert {ApprovalError, InvalidDecisionError, approvals.FormTooLargeError} <= set(pages.reachable())
    assert ControlError not in pages.reachable()
    assert {TriggerError, SignatureError, ControlError, InputTooLargeError} <= set(webhooks.reachable())
    assert CaseError not in webhooks.reachable()


def test_a_subclass_answers_as_its_nearest_mapped_base() -> None:
    class BusyError(WrongStateError):
        pass

    class StaleError(LinkExpiredError):
        pass

    class ForgedError(SignatureError):
        pass

    assert lookup(errors.ANSWERS, BusyError) == (409, "wrong_state")
    assert lookup(errors.ANSWERS, ForkError) == (400, "bad_request")  # ControlError's row
    assert lookup(approvals.REFUSALS, StaleError) == (410, "This link has expired")
    assert lookup(approvals.REFUSALS, approvals.FormTooLargeError) == (413, "The form is too large")
    assert lookup(triggers.REFUSED, ForgedError) == (401, "unauthorized")


def test_an_error_no_row_maps_has_no_status() -> None:
    class ElsewhereError(Exception):
        pass

    assert lookup(errors.ANSWERS, ElsewhereError) is None
    assert lookup(errors.ANSWERS, KeyError) is None  # ThreadNotFoundError is a KeyError; its base is not mapped
    assert lookup(triggers.REFUSED, Exception) is None


# --- webhooks: each outcome's status, and the answers the functional tests hold ---------------------------------


def test_every_webhook_outcome_has_a_success_status() -> None:
    assert set(triggers.ACCEPTED) == set(get_args(WebhookOutcome))
    assert all(200 <= status <= 299 for status in triggers.ACCEPTED.values())


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            WebhookAccepted("started", {"thread_id": "th_1", "agent": "triage"}),
            (202, {"thread_id": "th_1", "agent": "triage"}),
        ),
        (
            WebhookAccepted("duplicate", {"thread_id": "th_1", "duplicate": True}),
            (200, {"thread_id": "th_1", "duplicate": True}),
        ),
        (WebhookAccepted("ignored", {"ignored": "no agent"}), (202, {"ignored": "no agent"})),
        (WebhookAccepted("challenge", {"challenge": "c"}), (200, {"challenge": "c"})),
        (WebhookAccepted("acknowledged", {"text": "On it"}), (200, {"text": "On it"})),
        (WebhookRefused(SignatureError("bad"), "bad"), (401, {"error": "unauthorized", "detail": "bad"})),
        (WebhookRefused(UnknownSourceError("no such"), "why"), (404, {"error": "not_found", "detail": "no such"})),
        (WebhookRefused(BadDeliveryError("not JSON"), "x"), (400, {"error": "bad_request", "detail": "not JSON"})),
        (WebhookRefused(ControlError("input is empty"), "x"), (400, {"error": "refused", "detail": "input is empty"})),
        (WebhookRefused(InputTooLargeError("too long"), "x"), (413, {"error": "refused", "detail": "too long"})),
    ],
)
def test_each_webhook_answer_as_http(answer: WebhookAccepted | WebhookRefused, expected: tuple[int, Any]) -> None:
    assert triggers.respond(answer) == expected


def test_a_webhook_refusal_no_row_maps_is_raised_not_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The route raises it, and the function's catch-all answers 500 (tests/functional/test_http_status_map.py)."""
    monkeypatch.setattr(triggers, "REFUSED", {})
    with pytest.raises(ControlError, match="input is empty"):
        triggers.respond(WebhookRefused(ControlError("input is empty"), "x"))
