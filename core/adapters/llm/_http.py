"""HTTP plumbing shared by the httpx providers: one JSON POST, and every failure mapped to one of the two error kinds.

Imported only by the provider modules (themselves imported lazily), so ``import core.adapters.llm`` never loads httpx.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import httpx

from core.kernel.model import ContextWindowExceededError, LLMRequestError, RetryableLLMError, is_context_overflow

_RETRYABLE_4XX = frozenset({408, 409, 429})
"""Request timeout, lock timeout, rate limit: what the official OpenAI and Anthropic SDKs retry besides 5xx."""

_MAX_ERROR_TEXT = 500

_HINTS = {
    401: "check the API key",
    402: "check the account's billing and credit balance",
    403: "check the API key and that it may use this model",
    404: "check the model name and the base URL",
    413: "the request is over the API's size limit; the thread needs a shorter context",
}

_QUOTA_HINT = (
    "the account has run out of credit or hit its spending limit: add credit or raise the limit in the "
    "provider's billing settings (retrying will not help)"
)

CONNECT_TIMEOUT_S = 5.0
"""Connecting to an API endpoint takes milliseconds; waiting longer only eats the step's Lambda time."""

WRITE_TIMEOUT_S = 10.0
"""Sending a request body of a few hundred kilobytes at most."""

POOL_TIMEOUT_S = 5.0
"""Waiting for a free connection: a step makes one call at a time, so this never waits in practice."""


def client_timeout(read_s: float, connect_s: float = CONNECT_TIMEOUT_S) -> httpx.Timeout:
    """The client's timeouts: ``read_s`` bounds how long the model may take to answer, the others stay short.

    httpx applies each one separately, so one attempt's worst case is their sum, which the Lambda timeout of the
    step function must cover (tests/unit/test_llm_timeouts.py checks it against template.yaml).
    """
    return httpx.Timeout(
        read_s, connect=min(connect_s, read_s), write=min(WRITE_TIMEOUT_S, read_s), pool=min(POOL_TIMEOUT_S, read_s)
    )


class RetryableHTTPError(RetryableLLMError):
    """A retryable HTTP status, with the server's ``Retry-After`` (in seconds) when it sent one.

    Step Functions retries on its own schedule; the hint is kept for logs and for callers that pace themselves.
    """

    def __init__(self, provider: str, message: str, *, status: int, retry_after_s: float | None) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after_s = retry_after_s


class JSONPoster:
    """POSTs JSON bodies for one provider, over an injected client or one built on first use and then reused.

    The client is never built at import or construction time: a cold start that never calls the model
    should not pay for a connection pool.
    """

    def __init__(
        self, provider: str, client: httpx.Client | None, timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S
    ) -> None:
        self.provider = provider
        self._client = client
        self._owns_client = client is None
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    @property
    def client(self) -> httpx.Client:
        """The injected client, or the one this poster built (once) on first use."""
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout)
        return self._client

    def close(self) -> None:
        """Close the client this poster built, if it built one; an injected client belongs to whoever passed it."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def post(self, url: str, *, headers: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON and return the decoded JSON object of a 2xx answer.

        Raises:
            RetryableLLMError: timeouts, connection failures, 408/409/429 and 5xx.
            LLMRequestError: other statuses, bad URLs, and 2xx bodies that are not a JSON object.
        """
        try:
            response = self.client.post(url, headers=dict(headers), json=dict(body))
        except httpx.TimeoutException as exc:
            raise RetryableLLMError(self.provider, f"request to {url} timed out ({type(exc).__name__})") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise LLMRequestError(self.provider, f"bad URL {url!r}: {exc}; check the base URL") from exc
        except httpx.TransportError as exc:
            raise RetryableLLMError(self.provider, f"could not reach {url}: {_describe(exc)}") from exc
        except httpx.RequestError as exc:
            raise LLMRequestError(self.provider, f"request to {url} failed: {_describe(exc)}") from exc
        if response.is_success:
            return _json_object(self.provider, response)
        raise error_for_response(self.provider, response)


def _json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    """Decode a 2xx body, refusing anything but a JSON object (an HTML proxy page is not a completion)."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LLMRequestError(
            provider, f"response body is not JSON: {_snippet(response.text)!r}", status=response.status_code
        ) from exc
    if not isinstance(data, dict):
        raise LLMRequestError(
            provider, f"response body is a JSON {type(data).__name__}, expected an object", status=response.status_code
        )
    return data


def error_for_response(provider: str, response: httpx.Response) -> RetryableLLMError | LLMRequestError:
    """Map a non-2xx response to the error kind Step Functions should see, keeping the provider's own message.

    An exhausted quota comes as a 429 like a rate limit, but no retry can fix it (OpenAI ``insufficient_quota``),
    so it is checked first; a prompt too long for the model's context window gets its own error kind.
    """
    status = response.status_code
    message = provider_message(response)
    if "insufficient_quota" in _error_codes(response):
        return LLMRequestError(provider, f"{message}; {_QUOTA_HINT}", status=status)
    if _should_retry(response):
        retry_after_s = retry_after_seconds(response.headers)
        if retry_after_s is not None:
            message = f"{message}; retry after {retry_after_s:g}s"
        return RetryableHTTPError(provider, message, status=status, retry_after_s=retry_after_s)
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        return LLMRequestError(provider, f"unexpected redirect to {location}; check the base URL", status=status)
    if status == 400 and ("context_length_exceeded" in _error_codes(response) or is_context_overflow(message)):
        return ContextWindowExceededError(provider, message, status=status)
    hint = _HINTS.get(status)
    return LLMRequestError(provider, f"{message}; {hint}" if hint else message, status=status)


def _error_codes(response: httpx.Response) -> set[str]:
    """The machine-readable ``error.type`` and ``error.code`` of an OpenAI or Anthropic error body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return set()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return set()
    return {value for value in (error.get("type"), error.get("code")) if isinstance(value, str)}


def _should_retry(response: httpx.Response) -> bool:
    """Retry 408/409/429/5xx, unless the server says otherwise with ``x-should-retry`` (as both SDKs honour)."""
    override = response.headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return response.status_code in _RETRYABLE_4XX or response.status_code >= 500


def provider_message(response: httpx.Response) -> str:
    """The error message the provider put in the body, in any of the shapes OpenAI-compatible servers use.

    OpenAI: ``{"error": {"message", "type", "code"}}``; Anthropic: ``{"type": "error", "error": {"type", "message"}}``;
    others: ``{"error": "..."}``, ``{"message": "..."}`` or FastAPI's ``{"detail": "..."}``. Falls back to the raw text.
    """
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            text = error.get("message")
            kind = error.get("code") or error.get("type")  # OpenAI's code is the more specific
            if isinstance(text, str) and text:
                return f"{kind}: {text}" if isinstance(kind, str) and kind else text
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    text = _snippet(response.text)
    return text or response.reason_phrase or "no error message in the response"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after``; HTTP dates are ignored (neither API sends them)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _snippet(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def token_count(value: object) -> int:
    """A usage count from a provider's JSON: a non-negative int, anything else counts as zero."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def malformed(provider: str, api: str, missing: str, data: dict[str, Any]) -> LLMRequestError:
    """A 200 whose body is not the API's shape: usually a base URL pointing at something else."""
    return LLMRequestError(
        provider,
        f"unexpected {api} response: {missing} (top-level keys: {sorted(data)}); "
        f"check that the base URL serves the {api} API",
    )
