"""HTTP plumbing shared by the httpx providers: one JSON POST, and every failure mapped to one of the two error kinds.

Imported only by the provider modules (themselves imported lazily), so ``import core.llm`` never loads httpx.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import httpx

from core.llm.base import LLMRequestError, RetryableLLMError

_RETRYABLE_4XX = frozenset({408, 409, 429})
"""Request timeout, lock timeout, rate limit: what the official OpenAI and Anthropic SDKs retry besides 5xx."""

_MAX_ERROR_TEXT = 500

_HINTS = {
    401: "check the API key",
    403: "check the API key and that it may use this model",
    404: "check the model name and the base URL",
}


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

    def __init__(self, provider: str, client: httpx.Client | None, timeout_s: float) -> None:
        self.provider = provider
        self._client = client
        self._timeout_s = timeout_s

    @property
    def client(self) -> httpx.Client:
        """The injected client, or the one this poster built (once) on first use."""
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout_s)
        return self._client

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
    """Map a non-2xx response to the error kind Step Functions should see, keeping the provider's own message."""
    status = response.status_code
    message = provider_message(response)
    if _should_retry(response):
        retry_after_s = retry_after_seconds(response.headers)
        if retry_after_s is not None:
            message = f"{message}; retry after {retry_after_s:g}s"
        return RetryableHTTPError(provider, message, status=status, retry_after_s=retry_after_s)
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        return LLMRequestError(provider, f"unexpected redirect to {location}; check the base URL", status=status)
    hint = _HINTS.get(status)
    return LLMRequestError(provider, f"{message}; {hint}" if hint else message, status=status)


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
