"""The spend ledger in DynamoDB: one item per agent and day, next to the threads (ARCHITECTURE.md, "The data model")."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from core.adapters.store.transient import unavailable_is_retryable

if TYPE_CHECKING:  # the stubs are a dev dependency: the Lambda package does not carry them
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = ["RETENTION_SECONDS", "DynamoSpendLedger"]

RETENTION_SECONDS = 90 * 24 * 3600


class DynamoSpendLedger:
    """``PK=SPEND#<agent>, SK=DAY#<day>`` with an atomic ADD per step; TTL removes old days."""

    def __init__(self, table: str, dynamodb: DynamoDBClient) -> None:
        self.table = table
        self.dynamodb = dynamodb

    @staticmethod
    def _key(agent: str, day: str) -> dict[str, AttributeValueTypeDef]:
        return {"PK": {"S": f"SPEND#{agent}"}, "SK": {"S": f"DAY#{day}"}}

    def spent(self, agent: str, day: str) -> float:
        with unavailable_is_retryable(f"read the spend of agent {agent!r} on {day}"):
            found = self.dynamodb.get_item(TableName=self.table, Key=self._key(agent, day), ConsistentRead=True)
        item = found.get("Item")
        return float(item["usd"]["N"]) if item else 0.0

    def add(self, agent: str, day: str, usd: float) -> float:
        expires = int(datetime.fromisoformat(day).timestamp()) + RETENTION_SECONDS
        # A transient failure is retried by Step Functions: the ADD either happened or not, never half. If the
        # answer was lost after DynamoDB applied it, the retry counts the step twice: the budget errs on the safe side.
        with unavailable_is_retryable(f"add {usd!r} USD to the spend of agent {agent!r} on {day}"):
            out = self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(agent, day),
                UpdateExpression="ADD usd :usd SET expires_at = if_not_exists(expires_at, :exp)",
                ExpressionAttributeValues={":usd": {"N": repr(round(usd, 10))}, ":exp": {"N": str(expires)}},
                ReturnValues="UPDATED_NEW",
            )
        return float(out["Attributes"]["usd"]["N"])
