"""DynamoDB requests and bytes on the wire, counted through botocore's event hooks (the store tests' meter)."""

from __future__ import annotations

from typing import Any


class Traffic:
    """Counts DynamoDB operations and the bytes sent and received, on one client."""

    def __init__(self, client: Any) -> None:
        self.ops: list[str] = []
        self.sent = 0
        self.received = 0
        client.meta.events.register("request-created.dynamodb", self._on_request)
        client.meta.events.register("after-call.dynamodb", self._on_response)

    def _on_request(self, request: Any, operation_name: str, **_: Any) -> None:
        self.ops.append(operation_name)
        self.sent += len(request.body or b"")

    def _on_response(self, http_response: Any, **_: Any) -> None:
        self.received += len(http_response.content)

    def reset(self) -> None:
        self.ops, self.sent, self.received = [], 0, 0
