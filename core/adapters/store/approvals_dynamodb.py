"""Approval records in the threads table: ``PK=APPROVAL#<id>, SK=META``, one conditional transition."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from core.adapters.store.transient import unavailable_is_retryable
from core.services.approvals import Approval, ApprovalNotFoundError, ApprovalState

if TYPE_CHECKING:  # the stubs are a dev dependency: the Lambda package does not carry them
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

RETENTION_SECONDS = 30 * 24 * 3600
"""Decided approvals stay this long after their expiry (audit), then DynamoDB's TTL removes them."""

P = ParamSpec("P")
R = TypeVar("R")


def _retryable(
    method: Callable[Concatenate[DynamoApprovalStore, P], R],
) -> Callable[Concatenate[DynamoApprovalStore, P], R]:
    """Throttling, 5xx and network errors become StoreUnavailableError, which Step Functions retries.

    A step that records or decides an approval must not fail the execution because DynamoDB was busy for a
    moment; conditional check failures are answers (already decided, already recorded) and pass through.
    """

    @functools.wraps(method)
    def guarded(self: DynamoApprovalStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        first = args[0] if args else None
        approval_id = first.approval_id if isinstance(first, Approval) else first
        with unavailable_is_retryable(f"{method.__name__.replace('_', ' ')} approval {approval_id!r}"):
            return method(self, *args, **kwargs)

    return guarded


class DynamoApprovalStore:
    """The :class:`core.services.approvals.ApprovalStore` on DynamoDB (boto3 client injected)."""

    def __init__(self, table: str, dynamodb: DynamoDBClient) -> None:
        self.table = table
        self.dynamodb = dynamodb

    @staticmethod
    def _key(approval_id: str) -> dict[str, AttributeValueTypeDef]:
        return {"PK": {"S": f"APPROVAL#{approval_id}"}, "SK": {"S": "META"}}

    @_retryable
    def put_pending(self, approval: Approval) -> Approval:
        body = approval.model_dump_json(exclude={"state", "decided_by", "decided_at"})
        item: dict[str, AttributeValueTypeDef] = {
            **self._key(approval.approval_id),
            "doc": {"S": body},
            "state": {"S": "pending"},
            "thread_id": {"S": approval.thread_id},
            "expires_at": {"N": str(approval.expires_at + RETENTION_SECONDS)},
        }
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK) OR #s = :pending",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":pending": {"S": "pending"}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return self.get(approval.approval_id)
        return approval

    @_retryable
    def get(self, approval_id: str) -> Approval:
        found = self.dynamodb.get_item(TableName=self.table, Key=self._key(approval_id), ConsistentRead=True)
        item = found.get("Item")
        if item is None:
            raise ApprovalNotFoundError(f"no approval {approval_id!r}")
        extra: dict[str, Any] = {"state": item["state"]["S"]}
        if "decided_by" in item:
            extra["decided_by"] = item["decided_by"]["S"]
            extra["decided_at"] = int(item["decided_at"]["N"])
        return Approval.model_validate_json(item["doc"]["S"]).model_copy(update=extra)

    @_retryable
    def close(self, approval_id: str, state: ApprovalState, by: str, at: int) -> bool:
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(approval_id),
                UpdateExpression="SET #s = :state, decided_by = :by, decided_at = :at",
                ConditionExpression="#s = :pending",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":state": {"S": state},
                    ":by": {"S": by},
                    ":at": {"N": str(at)},
                    ":pending": {"S": "pending"},
                },
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True
