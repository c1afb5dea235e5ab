"""Who is calling the HTTP API and what they may do: the principal and its scopes (``read``, ``operate``, ``approve``).

``functions/api.py`` checks the scope a request needs (``required_scope``, by method and path) before any route
runs, so a route added later is covered by default. A route that needs more than that (the compat API continuing a
done thread operates it) asks with ``require``; every route records ``caller`` as who did it, never a name from the
body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from pydantic import BaseModel

from functions._wiring import LEGACY_PRINCIPAL, SCOPES
from functions.routes.errors import ScopeError

DEFAULT_CALLER = LEGACY_PRINCIPAL


class Principal(BaseModel):
    """Who is calling and what they may do, as the front door's authorizer vouched for it."""

    name: str
    scopes: frozenset[str]
    kind: Literal["key", "token"] = "key"


_APPROVE_PATH = re.compile(r"/threads/[^/]+/responses/?$|/thread/[^/]+/response/?$")
_JWT_NAME_CLAIMS = ("email", "cognito:username", "username", "preferred_username", "client_id", "sub")
"""The first of these a token carries names its principal (``email`` only when not marked unverified): readable in
the timeline where the issuer has it, the stable ``sub`` otherwise."""


def required_scope(event: Mapping[str, Any]) -> str:
    """The scope a request needs, by its method and path (issue 13).

    Decided before any route runs, so a route added later is covered by default: every GET reads, answering a
    person's request (``/threads/{id}/responses`` and the compat ``/thread/{id}/response``) approves, and every
    other call operates.
    """
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or event.get("httpMethod") or "").upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    path = str(event.get("rawPath") or http.get("path") or "")
    return "approve" if _APPROVE_PATH.search(path) else "operate"


def principal_of(event: Mapping[str, Any]) -> Principal:
    """The caller from the request context API Gateway built.

    ``authorizer.lambda`` is the Lambda authorizer's context (``caller`` and the space-separated ``scopes``; a
    context without ``scopes`` is the single-key authorizer of old, whose one key could do everything).
    ``authorizer.jwt`` is the JWT authorizer's (template.yaml ``JwtIssuer``): the name from the token's claims,
    the scopes from its ``scope``/``scp`` claim. No authorizer at all is a direct invocation (tests, the Lambda
    console: IAM decides who may invoke), treated as the single key. Any other authorizer grants nothing.
    """
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    if authorizer is None:
        return Principal(name=DEFAULT_CALLER, scopes=frozenset(SCOPES))
    lam = authorizer.get("lambda") if isinstance(authorizer, Mapping) else None
    jwt = authorizer.get("jwt") if isinstance(authorizer, Mapping) else None
    if isinstance(jwt, Mapping):
        return _token_principal(jwt)
    if isinstance(lam, Mapping):
        caller = lam.get("caller")
        name = str(caller)[:200] if caller else DEFAULT_CALLER
        scopes = lam.get("scopes")
        return Principal(name=name, scopes=frozenset(SCOPES) if scopes is None else _scope_names(scopes))
    return Principal(name="unknown", scopes=frozenset())


def _token_principal(jwt: Mapping[str, Any]) -> Principal:
    claims = jwt.get("claims")
    claims = claims if isinstance(claims, Mapping) else {}
    name = next(
        (
            str(claims[claim])[:200]
            for claim in _JWT_NAME_CLAIMS
            if claims.get(claim) and not (claim == "email" and str(claims.get("email_verified")).lower() == "false")
        ),
        "unknown",
    )
    found = _scope_names(jwt.get("scopes")) | _scope_names(claims.get("scope")) | _scope_names(claims.get("scp"))
    return Principal(name=name, scopes=found, kind="token")


def _scope_names(value: Any) -> frozenset[str]:
    """Our scopes among ``value``: a space- or comma-separated string (API Gateway flattens a list claim to
    ``"[a b]"``) or a list. A resource-server prefix is dropped, as Cognito writes ``stepfold/read``."""
    if isinstance(value, str):
        items: list[Any] = value.strip().strip("[]").replace(",", " ").split()
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return frozenset()
    names = {re.split(r"[/:]", str(item).strip())[-1] for item in items}
    return frozenset(names & set(SCOPES))


def refusal(principal: Principal, scope: str) -> str | None:
    """Why ``principal`` may not do what needs ``scope`` (the 403's detail), or None when it may."""
    if scope in principal.scopes:
        return None
    held = [s for s in SCOPES if s in principal.scopes]
    may = f"may {_and(held)}" if held else "has no stepfold scope"
    what = "this key" if principal.kind == "key" else "this token"
    fix = (
        "use a key that has it (api_keys in the API keys secret)"
        if principal.kind == "key"
        else "ask the token's issuer for it (the scope or scp claim)"
    )
    return f"{what} ({principal.name}) {may}, not {scope}: {fix}"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def require(router: BaseRouter, scope: str) -> None:
    """Refuse the current request (403) unless its caller holds ``scope``."""
    refused = refusal(principal_of(router.current_event.raw_event), scope)
    if refused is not None:
        raise ScopeError(refused)


def caller(router: BaseRouter) -> str:
    """Who is calling: the principal the authorizer vouched for (recorded as ``by``; a body cannot name another).

    ``router`` is the calling route's: once included in the resolver, its current event is the request's.
    """
    return principal_of(router.current_event.raw_event).name
