"""A real local HTTP server that speaks OpenAI's and Anthropic's APIs, scripted per provider, for tests.

Faults are injected on the wire, where production meets them: the adapters under test send real HTTP requests
through their real httpx client, and get real statuses, error bodies, headers, stalls and dropped connections.

Usage::

    from tests.provider_server import ProviderServer, error, rate_limited, tool_call

    with ProviderServer() as srv:
        srv.openai.push(error(500), rate_limited(retry_after=1), tool_call("add", {"a": 1, "b": 2}))
        srv.anthropic.push(overloaded())
        ...  # point the code under test at srv.openai.base_url / srv.anthropic.base_url
        assert "parallel_tool_calls" not in srv.openai.requests[0].body

The server (``ProviderServer(default=..., lifetime_s=120.0)``):

- ``srv.url``: ``http://127.0.0.1:<port>``, a free port chosen by the OS.
- ``srv.openai`` and ``srv.anthropic``: one :class:`Script` each. ``.base_url`` is what the provider is configured
  with: ``srv.url + "/v1"`` for OpenAI (``OPENAI_BASE_URL``, ``ProviderConfig.openai_base_url``), ``srv.url`` for
  Anthropic (``ProviderConfig.anthropic_base_url``; the adapter adds ``/v1/messages``).
  ``.push(*answers)`` queues answers, served in order, one per request; ``.default`` answers when the queue is
  empty (a ``done_for_now`` tool call unless set), so a whole agent thread can run against the server;
  ``.requests`` lists what arrived as :class:`Received` (``path``, lower-cased ``headers``, decoded JSON ``body``);
  ``.pending`` counts the answers not served yet.
- ``srv.requests``: every request, both APIs, in order of arrival.
- It serves ``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic); any other path gets a 404.
- Bounded: it stops when the ``with`` block ends, or by itself after ``lifetime_s``; a delayed answer wakes up
  as soon as the server stops, so no test waits for a sleep.

Answers (each renders in the wire format of the API it is pushed to, with ``usage``, and echoes the model asked for):

- ``tool_call(name, args, *, text="", usage=None)``: one tool call (OpenAI ``tool_calls`` with the arguments as
  a JSON string, Anthropic a ``tool_use`` block).
- ``text(content)``: an answer without a tool call.
- ``error(status, message=None, *, type=None, code=None, headers=None)``: the provider's error body
  (OpenAI ``{"error": {"message", "type", "param", "code"}}``, Anthropic ``{"type": "error", "error": {...}}``),
  with a type matching the status unless given; headers such as ``retry-after``, ``x-should-retry``.
- ``rate_limited(retry_after=1.0, *, retry_after_ms=None)``, ``overloaded()`` (Anthropic 529 ``overloaded_error``,
  OpenAI 503), ``insufficient_quota()`` (OpenAI 429 ``insufficient_quota``; Anthropic's 400 credit-balance error),
  ``context_too_long()`` (the 400 each API sends for a prompt over the context window).
- ``truncated(name, args)``: a tool call cut off at the output limit (OpenAI ``finish_reason: "length"`` with
  cut-off JSON arguments, Anthropic ``stop_reason: "max_tokens"`` with a partial input).
- ``refusal(text)``: OpenAI ``message.refusal``, Anthropic ``stop_reason: "refusal"``.
- ``stop(reason, *, tool=None, args=None, text="")``: any raw stop reason, e.g. ``"model_context_window_exceeded"``
  or ``"content_filter"``, as the provider would send it.
- ``delay(seconds, then=None)``: wait (longer than the client's timeout, say), then answer ``then`` (or the default).
- ``disconnect()``: read the request, then close the connection without answering.
- ``raw(status, body, headers=None)``: exactly this JSON (or text) body, for shapes the builders do not cover.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from types import TracebackType
from typing import Any, Literal

Api = Literal["openai", "anthropic"]

PATHS: dict[str, Api] = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}


@dataclass(frozen=True)
class Received:
    """One request as the server got it."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Reply:
    """What goes on the wire: a status, a JSON (or text) body and extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


Render = Callable[[Api, dict[str, Any]], Reply | None]
"""Renders an answer for one API and the request's JSON body; None closes the connection without a reply."""


@dataclass(frozen=True)
class Answer:
    """One scripted answer. Build it with :func:`tool_call`, :func:`error` and the other functions of this module."""

    label: str
    render: Render | None
    """None: answer with the script's default (after ``delay_s``)."""
    delay_s: float = 0.0


_ids = count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


# --- answers ---------------------------------------------------------------------------------------


def tool_call(name: str, args: Mapping[str, Any], *, text: str = "", usage: tuple[int, int] | None = None) -> Answer:
    """The model calls ``name`` with ``args`` (and may say ``text`` first)."""

    def render(api: Api, request: dict[str, Any]) -> Reply:
        arguments = json.dumps(dict(args), separators=(",", ":"))
        if api == "openai":
            forced = request.get("tool_choice") not in (None, "auto", "none")
            reason = "stop" if forced else "tool_calls"  # OpenAI finishes a forced call with "stop"
            return _openai(request, text=text, call=(name, arguments), finish=reason, usage=usage)
        return _anthropic(request, text=text, call=(name, dict(args)), stop="tool_use", usage=usage)

    return Answer(f"tool_call({name})", render)


def text(content: str) -> Answer:
    """The model answers in prose, without a tool call."""

    def render(api: Api, request: dict[str, Any]) -> Reply:
        if api == "openai":
            return _openai(request, text=content, finish="stop")
        return _anthropic(request, text=content, stop="end_turn")

    return Answer("text", render)


def truncated(name: str, args: Mapping[str, Any]) -> Answer:
    """The model's call to ``name`` is cut off at the request's output limit, halfway through its arguments."""

    def render(api: Api, request: dict[str, Any]) -> Reply:
        limit = _max_tokens(request)
        if api == "openai":
            whole = json.dumps(dict(args), separators=(",", ":"))
            cut = whole[: max(1, len(whole) // 2)]
            return _openai(request, call=(name, cut), finish="length", usage=(_tokens(request), limit))
        partial = dict(list(args.items())[: len(args) // 2])
        return _anthropic(request, call=(name, partial), stop="max_tokens", usage=(_tokens(request), limit))

    return Answer(f"truncated({name})", render)


def refusal(content: str = "I can't help with that.") -> Answer:
    """The model refuses: OpenAI ``message.refusal``, Anthropic ``stop_reason: "refusal"``."""

    def render(api: Api, request: dict[str, Any]) -> Reply:
        if api == "openai":
            return _openai(request, refusal=content, finish="stop")
        return _anthropic(request, text=content, stop="refusal")

    return Answer("refusal", render)


def stop(reason: str, *, tool: str | None = None, args: Mapping[str, Any] | None = None, text: str = "") -> Answer:
    """A message with this raw stop reason (``finish_reason`` / ``stop_reason``), with or without a tool call."""

    def render(api: Api, request: dict[str, Any]) -> Reply:
        given = dict(args or {})
        if api == "openai":
            call = (tool, json.dumps(given)) if tool else None
            return _openai(request, text=text, call=call, finish=reason)
        return _anthropic(request, text=text, call=(tool, given) if tool else None, stop=reason)

    return Answer(f"stop({reason})", render)


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error"}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error(
    status: int,
    message: str | None = None,
    *,
    type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An error status with the provider's error body; ``type`` defaults to the API's type for the status."""

    def render(api: Api, request: dict[str, Any]) -> Reply:
        text = message or f"scripted {status} error"
        extra = dict(headers or {})
        if api == "openai":
            kind = type or _OPENAI_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
            body: dict[str, Any] = {"error": {"message": text, "type": kind, "param": None, "code": code}}
            return Reply(status, body, {"x-request-id": _id("req"), **extra})
        kind = type or _ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        request_id = _id("req")
        body = {"type": "error", "error": {"type": kind, "message": text}, "request_id": request_id}
        return Reply(status, body, {"request-id": request_id, **extra})

    return Answer(f"error({status})", render)


def rate_limited(retry_after: float | None = 1.0, *, retry_after_ms: float | None = None) -> Answer:
    """429 with the provider's rate-limit body and ``retry-after`` (and/or ``retry-after-ms``) headers."""
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = f"{retry_after_ms:g}"
    openai = error(
        429,
        "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1.",
        type="requests",
        code="rate_limit_exceeded",
        headers=headers,
    )
    anthropic = error(429, "Number of request tokens has exceeded your per-minute rate limit", headers=headers)
    return _per_api("rate_limited", openai, anthropic)


def overloaded() -> Answer:
    """Anthropic's 529 ``overloaded_error``; OpenAI's 503 "engine is currently overloaded"."""
    openai = error(503, "The engine is currently overloaded, please try again later.", type="server_error")
    anthropic = error(529, "Overloaded")
    return _per_api("overloaded", openai, anthropic)


def insufficient_quota() -> Answer:
    """OpenAI's 429 ``insufficient_quota`` (no retry helps); Anthropic's 400 "credit balance is too low"."""
    openai = error(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        type="insufficient_quota",
        code="insufficient_quota",
    )
    anthropic = error(
        400,
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
        "purchase credits.",
    )
    return _per_api("insufficient_quota", openai, anthropic)


def context_too_long() -> Answer:
    """The 400 each API sends when the prompt is longer than the model's context window."""
    openai = error(
        400,
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. "
        "Please reduce the length of the messages.",
        code="context_length_exceeded",
    )
    anthropic = error(400, "prompt is too long: 208310 tokens > 200000 maximum")
    return _per_api("context_too_long", openai, anthropic)


def delay(seconds: float, then: Answer | None = None) -> Answer:
    """Wait ``seconds`` (cut short if the server stops), then answer ``then``, or the script's default."""
    if then is None:
        return Answer(f"delay({seconds:g})", None, seconds)
    return Answer(f"delay({seconds:g}, {then.label})", then.render, seconds + then.delay_s)


def disconnect() -> Answer:
    """Read the request, then close the connection without a status line (a dropped connection)."""
    return Answer("disconnect", lambda api, request: None)


def raw(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
    """Exactly this body (JSON, or a ``str`` sent as text) with this status, whatever the API."""
    return Answer(f"raw({status})", lambda api, request: Reply(status, body, dict(headers or {})))


def _per_api(label: str, openai: Answer, anthropic: Answer) -> Answer:
    def render(api: Api, request: dict[str, Any]) -> Reply | None:
        chosen = openai if api == "openai" else anthropic
        assert chosen.render is not None
        return chosen.render(api, request)

    return Answer(label, render)


# --- wire formats ----------------------------------------------------------------------------------


def _tokens(request: dict[str, Any]) -> int:
    """A stand-in input token count: about four characters a token of the request."""
    return max(1, len(json.dumps(request)) // 4)


def _max_tokens(request: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, int):
            return value
    return 1024


def _usage(request: dict[str, Any], usage: tuple[int, int] | None, out: str) -> tuple[int, int]:
    return usage or (_tokens(request), max(1, len(out) // 4) + 8)


def _openai(
    request: dict[str, Any],
    *,
    finish: str,
    text: str = "",
    call: tuple[str, str] | None = None,
    refusal: str | None = None,
    usage: tuple[int, int] | None = None,
) -> Reply:
    """A ``chat.completion`` object, as OpenAI's chat-completions API answers."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": refusal}
    if call is not None:
        function = {"name": call[0], "arguments": call[1]}
        message["tool_calls"] = [{"id": _id("call"), "type": "function", "function": function}]
    prompt, completion = _usage(request, usage, text + (call[1] if call else "") + (refusal or ""))
    body = {
        "id": _id("chatcmpl"),
        "object": "chat.completion",
        "created": 1_735_787_045,
        "model": request.get("model", "unknown"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "system_fingerprint": "fp_provider_server",
    }
    return Reply(200, body, {"x-request-id": _id("req")})


def _anthropic(
    request: dict[str, Any],
    *,
    stop: str,
    text: str = "",
    call: tuple[str, dict[str, Any]] | None = None,
    usage: tuple[int, int] | None = None,
) -> Reply:
    """A ``message`` object, as Anthropic's Messages API answers."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if call is not None:
        content.append({"type": "tool_use", "id": _id("toolu"), "name": call[0], "input": call[1]})
    inp, out = _usage(request, usage, text + (json.dumps(call[1]) if call else ""))
    body = {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "unknown"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": out},
    }
    return Reply(200, body, {"request-id": _id("req")})


# --- the server ------------------------------------------------------------------------------------


DEFAULT_ANSWER = tool_call("done_for_now", {"answer": "done"})


class Script:
    """One API's queue of answers, its default, and the requests it got."""

    def __init__(self, api: Api, base_url: str, default: Answer) -> None:
        self.api = api
        self.base_url = base_url
        self.default = default
        self.requests: list[Received] = []
        self._queue: deque[Answer] = deque()
        self._lock = threading.Lock()

    def push(self, *answers: Answer) -> Script:
        """Queue answers, served in order, one per request."""
        with self._lock:
            self._queue.extend(answers)
        return self

    @property
    def pending(self) -> int:
        """Answers queued and not served yet."""
        with self._lock:
            return len(self._queue)

    def _take(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
            return self._queue.popleft() if self._queue else self.default


class ProviderServer:
    """OpenAI's ``/v1/chat/completions`` and Anthropic's ``/v1/messages`` on 127.0.0.1, in a background thread.

    Args:
        default: what both APIs answer when their queue is empty.
        lifetime_s: the server stops by itself after this long, so a forgotten one cannot outlive its test.
    """

    def __init__(self, *, default: Answer = DEFAULT_ANSWER, lifetime_s: float = 120.0) -> None:
        self._stopping = threading.Event()
        self._http = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        port = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.openai = Script("openai", f"{self.url}/v1", default)
        self.anthropic = Script("anthropic", self.url, default)
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="provider-server", daemon=True
        )
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._started = False

    def start(self) -> ProviderServer:
        """Start serving (``with`` does this)."""
        if not self._started:
            self._started = True
            self._thread.start()
            self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake any delayed answer; safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._timer.cancel()
        if self._started:
            self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> ProviderServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def script(self, api: Api) -> Script:
        return self.openai if api == "openai" else self.anthropic

    def _answer(self, api: Api, received: Received) -> tuple[Answer, Script]:
        with self._lock:
            self.requests.append(received)
        script = self.script(api)
        return script._take(received), script

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server stops first; True when it is still serving."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()


class _QuietServer(ThreadingHTTPServer):
    """Daemon handler threads, and no traceback when a client hangs up first (a timeout test does that)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and closed its socket is the expected case, not an error."""


def _handler_for(server: ProviderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs (and httpx's connection pool) expect

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            data = self.rfile.read(length) if length else b""
            api = PATHS.get(self.path.split("?", 1)[0])
            if api is None:
                self._send(Reply(404, {"error": {"message": f"no route {self.path}; serving {sorted(PATHS)}"}}))
                return
            try:
                body: Any = json.loads(data or b"null")
            except json.JSONDecodeError:
                body = data.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer, script = server._answer(api, Received(self.path, headers, body))
            if not server._wait(answer.delay_s):
                self.close_connection = True
                return
            render = answer.render or script.default.render
            reply = render(api, body if isinstance(body, dict) else {}) if render else None
            if reply is None:
                self.close_connection = True  # nothing written: the client sees the connection drop
                return
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            is_text = isinstance(reply.body, str)
            payload = (reply.body if is_text else json.dumps(reply.body)).encode()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(reply.status)
                self.send_header("content-type", "text/plain" if is_text else "application/json")
                self.send_header("content-length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows what matters."""

    return Handler


@contextlib.contextmanager
def provider_server(**kwargs: Any) -> Iterator[ProviderServer]:
    """``with provider_server() as srv:``, for fixtures that prefer a function."""
    with ProviderServer(**kwargs) as srv:
        yield srv
