"""The DynamoDB thread store: one item per event, one header per thread, one transaction per step.

Layout (one table, string keys ``PK``/``SK``):

- ``PK=THREAD#<id>, SK=META``: the header: agent, labels, version (number of events), status (the fold's,
  denormalised for listings), created_at/updated_at and an optional ``expires_at`` TTL.
- ``PK=THREAD#<id>, SK=EV#<seq:010d>``: one event as compact JSON in ``e`` and its type in ``t``. An event
  whose JSON is larger than ``offload_bytes`` lives in S3; its item keeps the key (``s3``), a ``preview``
  and the ``size``, so no item ever approaches DynamoDB's 400 KB limit.

An append writes only the new events and the header, conditioned on the version the writer read, so the
bytes written per step do not grow with the thread. A warm container keeps the threads it has seen and
reads only what is newer than its copy.

This module imports neither boto3 nor botocore: the low-level clients are injected, built once per container
by the caller. Their types come from the ``mypy-boto3-*`` stubs (a dev dependency), imported for the checker
only, so the Lambda package and its cold start do not carry them.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pydantic import ValidationError

from core.adapters.store.transient import unavailable_is_retryable
from core.kernel.events import Event, dump_event, parse_event, utcnow
from core.kernel.store import (
    STATUSES,
    InvalidCursorError,
    StoreUnavailableError,
    ThreadExistsError,
    ThreadListing,
    ThreadNotFoundError,
    UnreadableThreadError,
    VersionConflictError,
    check_listing,
    decode_cursor,
    encode_cursor,
)
from core.kernel.thread import Status, Thread, fold

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
    )
    from mypy_boto3_s3 import S3Client

MAX_EVENTS_PER_WRITE = 99
"""TransactWriteItems takes at most 100 items and one of them is the header."""
MAX_INLINE_BYTES = 350_000
"""The largest ``offload_bytes`` allowed: an item (event JSON plus keys) must stay under DynamoDB's 400 KB."""
_MAX_TRANSACTION_BYTES = 4_000_000
"""TransactWriteItems refuses requests whose items add up to more than 4 MB."""

STATUS_INDEX = "status-updated"
"""The GSI that lists threads: partition ``status``, sort ``updated_at``; sparse, only headers carry ``status``."""
_LIST_QUERIES = 10
"""At most this many Query calls per status for one listing page (an agent filter may skip many headers)."""

_META = "META"
_EV = "EV#"
_THREAD = "THREAD#"
_SEQ_DIGITS = 10
_FULL_LOAD_ATTEMPTS = 5
_FULL_LOAD_BACKOFF_SECONDS = 0.02
"""A torn read is re-read after 20, 40, 80 and 160 ms: 300 ms in all, far longer than a transaction takes to land."""
_THROTTLED_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
"""Cancellation reasons that mean "too fast", not "someone else wrote": retried as unavailable, not as a conflict."""

Item = dict[str, "AttributeValueTypeDef"]
"""A DynamoDB item in the low-level client's typed form (``{"S": ...}``, ``{"N": ...}``, ``{"M": ...}``)."""


class CorruptEventError(UnreadableThreadError):
    """A stored event cannot be read back: someone edited the item, or its S3 payload is missing."""

    def __init__(self, thread_id: str, seq: int | str, reason: str) -> None:
        what, sk = (f"event seq={seq}", _sk(seq)) if isinstance(seq, int) else (f"item {seq}", seq)
        super().__init__(
            f"thread {thread_id!r}: stored {what} is unreadable ({reason}); "
            f"inspect item PK={_pk(thread_id)} SK={sk} and restore it"
        )
        self.thread_id = thread_id
        self.seq = seq


def table_key_schema() -> dict[str, Any]:
    """The table's keys as ``create_table`` arguments (shared by tests, the local stack and the template)."""
    return {
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        "AttributeDefinitions": [
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def status_index_schema() -> dict[str, Any]:
    """The listing GSI as ``create_table`` arguments to merge in (template.yaml declares the same index)."""
    return {
        "AttributeDefinitions": [
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": STATUS_INDEX,
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def create_table(
    dynamodb: DynamoDBClient, table: str, *, ttl_attribute: str | None = "expires_at", status_index: bool = True
) -> None:
    """Create the threads table (on-demand) and wait until it is active; for tests and the local stack."""
    schema = table_key_schema()
    if status_index:
        index = status_index_schema()
        schema["AttributeDefinitions"] = [*schema["AttributeDefinitions"], *index["AttributeDefinitions"]]
        schema["GlobalSecondaryIndexes"] = index["GlobalSecondaryIndexes"]
    dynamodb.create_table(TableName=table, **schema)
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )


def _pk(thread_id: str) -> str:
    return f"{_THREAD}{thread_id}"


def _sk(seq: int) -> str:
    return f"{_EV}{seq:0{_SEQ_DIGITS}d}"


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


@dataclass(frozen=True)
class _Header:
    agent: str
    labels: dict[str, str]
    version: int

    @classmethod
    def from_item(cls, thread_id: str, item: Item) -> _Header:
        try:
            labels = {key: value["S"] for key, value in item.get("labels", {}).get("M", {}).items()}
            return cls(agent=item["agent"]["S"], labels=labels, version=int(item["version"]["N"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptEventError(thread_id, _META, f"header is malformed: {exc!r}") from None


@dataclass(frozen=True)
class _Encoded:
    """An event ready to write: its item, and the S3 object to upload first when it is offloaded."""

    item: Item
    offload: tuple[str, bytes] | None


P = ParamSpec("P")
R = TypeVar("R")


def _retryable(
    method: Callable[Concatenate[DynamoThreadStore, P], R],
) -> Callable[Concatenate[DynamoThreadStore, P], R]:
    """Transient DynamoDB/S3 errors (:func:`~core.adapters.store.transient.transient_aws_error`) become
    :class:`StoreUnavailableError`, which Step Functions retries; the message names the method, thread and code."""

    @functools.wraps(method)
    def guarded(self: DynamoThreadStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with unavailable_is_retryable(f"{method.__name__.replace('_', ' ')} {_subject(args)}in the thread store"):
            return method(self, *args, **kwargs)

    return guarded


def _subject(args: tuple[object, ...]) -> str:
    """``thread 't-1' `` for a store method's first argument (a thread id or a thread), else nothing."""
    first = args[0] if args else None
    thread_id = first.id if isinstance(first, Thread) else first
    return f"thread {thread_id!r} " if isinstance(thread_id, str) else ""


class DynamoThreadStore:
    """:class:`~core.kernel.store.ThreadStore` on one DynamoDB table, with large payloads in S3."""

    def __init__(
        self,
        table: str,
        dynamodb: DynamoDBClient,
        s3: S3Client,
        bucket: str,
        *,
        offload_bytes: int = 32_000,
        preview_chars: int = 400,
        cache: bool = True,
        cache_size: int = 64,
        ttl_days: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not 0 < offload_bytes <= MAX_INLINE_BYTES:
            raise ValueError(f"offload_bytes must be between 1 and {MAX_INLINE_BYTES} (DynamoDB items stop at 400 KB)")
        self._table = table
        self._db = dynamodb
        self._s3 = s3
        self._bucket = bucket
        self._offload_bytes = offload_bytes
        self._preview_chars = preview_chars
        self._cache_size = cache_size if cache else 0
        self._cache: OrderedDict[str, Thread] = OrderedDict()
        self._ttl_days = ttl_days
        self._clock = clock

    # -- the Protocol ------------------------------------------------------------------------------------------

    @_retryable
    def create(self, thread: Thread) -> Thread:
        """Write the header and every event in one transaction; :class:`ThreadExistsError` if the id is taken."""
        _check_batch(thread.id, len(thread.events))
        encoded = [self._encode(thread.id, event) for event in thread.events]
        self._upload(encoded)
        now = self._clock()
        header: Item = {
            "PK": _s(_pk(thread.id)),
            "SK": _s(_META),
            "agent": _s(thread.agent),
            "labels": {"M": {key: _s(value) for key, value in thread.labels.items()}},
            "version": _n(thread.version),
            "status": _s(fold(thread).status),
            "created_at": _s(now.isoformat()),
            "updated_at": _s(now.isoformat()),
        }
        if self._ttl_days is not None:
            header["expires_at"] = _n(self._expires_at(now))
        puts: list[TransactWriteItemTypeDef] = [
            {"Put": {"TableName": self._table, "Item": enc.item}} for enc in encoded
        ]
        writes: list[TransactWriteItemTypeDef] = [
            {"Put": {"TableName": self._table, "Item": header, "ConditionExpression": "attribute_not_exists(PK)"}},
            *puts,
        ]
        try:
            self._db.transact_write_items(TransactItems=writes)
        except self._db.exceptions.TransactionCanceledException as exc:
            if _reason(exc, 0) == "ConditionalCheckFailed":
                raise ThreadExistsError(thread.id) from None
            raise
        self._remember(thread)
        return thread

    @_retryable
    def load(self, thread_id: str) -> Thread:
        """The whole thread; a warm copy is refreshed with only the events written since it was read."""
        cached = self._cache.get(thread_id)
        thread = self._refresh(cached) if cached is not None else None
        if thread is None:
            thread = self._load_full(thread_id)
        self._remember(thread)
        return thread

    @_retryable
    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        """Write ``events`` and the header in one transaction conditioned on ``expected_version``.

        Only the new events and the header are written, whatever the thread's length. The header's status is
        the fold of the whole thread, so the thread at ``expected_version`` is needed: from the warm cache when
        this container has seen it (the usual step: load, decide, append), else read first.
        """
        _check_batch(thread_id, len(events))
        base = self._cache.get(thread_id)
        if base is None or base.version != expected_version:
            base = self.load(thread_id)
        if base.version != expected_version:
            raise VersionConflictError(thread_id, expected_version, base.version)
        updated = base.extend(events)
        if not events:
            return updated
        encoded = [self._encode(thread_id, event) for event in events]
        self._upload(encoded)
        now = self._clock()
        names = {"#v": "version", "#s": "status", "#u": "updated_at"}
        values: Item = {
            ":expected": _n(expected_version),
            ":new": _n(updated.version),
            ":status": _s(fold(updated).status),
            ":now": _s(now.isoformat()),
        }
        update = "SET #v = :new, #s = :status, #u = :now"
        if self._ttl_days is not None:
            names["#x"] = "expires_at"
            values[":exp"] = _n(self._expires_at(now))
            update += ", #x = :exp"
        puts: list[TransactWriteItemTypeDef] = [
            {"Put": {"TableName": self._table, "Item": enc.item, "ConditionExpression": "attribute_not_exists(SK)"}}
            for enc in encoded
        ]
        writes: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"PK": _s(_pk(thread_id)), "SK": _s(_META)},
                    "UpdateExpression": update,
                    "ConditionExpression": "#v = :expected",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            *puts,
        ]
        try:
            self._db.transact_write_items(TransactItems=writes)
        except self._db.exceptions.TransactionCanceledException as exc:
            self._cache.pop(thread_id, None)
            reasons = _reasons(exc)
            codes = {r.get("Code") for r in reasons}
            if "ConditionalCheckFailed" not in codes:
                if "TransactionConflict" in codes and not codes & _THROTTLED_REASONS:
                    # another transaction was writing the same thread at that instant: the same race, same answer
                    raise VersionConflictError(thread_id, expected_version) from None
                # Throttled items (nothing was written): _retryable makes it StoreUnavailableError; anything else
                # (ValidationError, ItemCollectionSizeLimitExceeded) is not weather and goes up as it is.
                raise
            old = reasons[0].get("Item") if reasons else None
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed" and not old:
                raise ThreadNotFoundError(thread_id) from None
            actual = int(old["version"]["N"]) if old and "version" in old else None
            raise VersionConflictError(thread_id, expected_version, actual) from None
        self._remember(updated)
        return updated

    @_retryable
    def mark_failed(self, thread_id: str, *, error: str, reason: str) -> str:
        """Set the header's status to ``failed`` (and why) without reading or adding events: for a thread whose
        events cannot be read, so listings and alarms tell the truth. The events stay as they are, for a person
        to restore; the version is unchanged, so no writer is misled."""
        self._cache.pop(thread_id, None)
        try:
            answer = self._db.update_item(
                TableName=self._table,
                Key={"PK": _s(_pk(thread_id)), "SK": _s(_META)},
                UpdateExpression="SET #s = :failed, #u = :now, #e = :error, #r = :reason",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames={"#s": "status", "#u": "updated_at", "#e": "failure_error", "#r": "failure"},
                ExpressionAttributeValues={
                    ":failed": _s("failed"),
                    ":now": _s(self._clock().isoformat()),
                    ":error": _s(error[:100]),
                    ":reason": _s(reason[:1000]),
                },
                ReturnValues="ALL_NEW",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ThreadNotFoundError(thread_id) from None
        return str(answer.get("Attributes", {}).get("agent", {}).get("S", "unknown"))

    # -- listing -----------------------------------------------------------------------------------------------

    @_retryable
    def list_threads(
        self, *, status: Status | None = None, agent: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[ThreadListing], str | None]:
        """Threads by ``updated_at``, newest first, from the ``status-updated`` GSI (headers only, no events).

        With a status: one Query of that partition (``ScanIndexForward=False``), ``agent`` as a filter. Without:
        one Query per status (five), merged by time; each may read up to ``limit`` headers that do not make this
        page, so a page costs up to 5 x ``limit`` header reads (about 0.5 RCU per 4 KB, headers are well under
        1 KB). An ``agent`` filter is applied after the read: headers it drops are paid for too, so a page may
        hold fewer than ``limit`` rows while ``next_cursor`` is still set (each status gives up after
        ``_LIST_QUERIES`` Query calls). The cursor carries each status's position (its ``LastEvaluatedKey``).
        GSI reads are eventually consistent: a thread shows up, or moves status, a moment after its write.
        """
        check_listing(status, limit)
        query = [status, agent]
        statuses = [status] if status is not None else list(STATUSES)
        positions = _positions(decode_cursor(cursor, query), statuses) if cursor is not None else {}
        fetched: dict[str, tuple[list[Item], Item | None]] = {}
        for name in statuses:
            position = positions.get(name)
            if position != "end":
                fetched[name] = self._list_status(name, agent, limit, position)
        newest_first = heapq.merge(
            *([(item, name) for item in items] for name, (items, _) in fetched.items()),
            key=lambda pair: pair[0]["updated_at"]["S"],
            reverse=True,
        )
        page = [pair for _, pair in zip(range(limit), newest_first, strict=False)]
        next_positions: dict[str, Any] = dict(positions)
        for listed, (items, last) in fetched.items():
            taken = [item for item, source in page if source == listed]
            if len(taken) == len(items):
                next_positions[listed] = last if last is not None else "end"
            elif taken:
                next_positions[listed] = _index_key(taken[-1])
        rows = [_listing(item) for item, _ in page]
        if all(next_positions.get(name) == "end" for name in statuses):
            return rows, None
        return rows, encode_cursor(query, next_positions)

    def _list_status(
        self, status: str, agent: str | None, limit: int, start: Item | None
    ) -> tuple[list[Item], Item | None]:
        """Up to ``limit`` headers of one status after ``start``, and the key to continue from (None: no more)."""
        names = {"#s": "status"}
        values: Item = {":s": _s(status)}
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if agent is not None:
            request["FilterExpression"] = "#a = :a"
            names["#a"] = "agent"
            values[":a"] = _s(agent)
        items: list[Item] = []
        for _ in range(_LIST_QUERIES):
            # Never ask for more than the page still needs, so LastEvaluatedKey is exactly where this page stops.
            request["Limit"] = limit - len(items)
            if start is not None:
                request["ExclusiveStartKey"] = start
            response = self._db.query(**request)
            items.extend(i for i in response.get("Items", []) if i["PK"]["S"].startswith(_THREAD))
            start = response.get("LastEvaluatedKey")
            if start is None or len(items) >= limit:
                break
        return items, start

    # -- reading -----------------------------------------------------------------------------------------------

    def _refresh(self, cached: Thread) -> Thread | None:
        """The cached thread brought up to date by one Query of the header and the events after it.

        ``META`` sorts after every ``EV#`` key, so ``SK >= EV#<cached version>`` returns exactly the new events
        and the header: the bytes read depend on what changed, not on the thread's length. ``None`` when the
        two do not line up (a write landed between the reads, or the table was edited): load it all instead.
        """
        items = self._query("PK = :pk AND SK >= :from", {":pk": _s(_pk(cached.id)), ":from": _s(_sk(cached.version))})
        header_item, event_items = _split(items)
        if header_item is None:
            self._cache.pop(cached.id, None)
            raise ThreadNotFoundError(cached.id)
        header = _Header.from_item(cached.id, header_item)
        if header.version == cached.version:
            return cached
        new = [self._decode(cached.id, item) for item in event_items]
        seqs = [event.seq for event in new]
        if header.version < cached.version or seqs != list(range(cached.version, header.version)):
            return None
        return cached.extend(new)

    def _load_full(self, thread_id: str) -> Thread:
        """Every item of the thread, page by page; read again while a concurrent append shows half-landed.

        A Query is read-committed item by item, not isolated from a transaction committing at the same moment:
        it may return an append's header and not yet all its events (a gap below the header's version), or its
        events and not yet its header (items past the version). Both are read again, a bounded number of times.
        Items past the version that stay are ignored (the header is the truth: the thread as of the header's
        version is complete and was committed). A gap that stays is :class:`StoreUnavailableError`, which Step
        Functions retries: from here, a transaction still landing and a deleted item look the same, and the
        first is the one real DynamoDB produces; the message says what to inspect for the second.
        """
        torn = ""
        for attempt in range(_FULL_LOAD_ATTEMPTS):
            if attempt:
                time.sleep(_FULL_LOAD_BACKOFF_SECONDS * 2 ** (attempt - 1))
            items = self._query("PK = :pk", {":pk": _s(_pk(thread_id))})
            header_item, event_items = _split(items)
            if header_item is None:
                raise ThreadNotFoundError(thread_id)
            header = _Header.from_item(thread_id, header_item)
            counted = [item for item in event_items if _seq_of(item) < header.version]
            missing = next((i for i, item in enumerate(counted) if _seq_of(item) != i), len(counted))
            if missing < header.version:
                torn = (
                    f"its header counts {header.version} events but item SK={_sk(missing)} was not there in "
                    f"{attempt + 1} consistent reads"
                )
                continue
            if len(counted) < len(event_items) and attempt + 1 < _FULL_LOAD_ATTEMPTS:
                continue  # an append's events landed before its header: its version is a read away
            events = tuple(self._decode(thread_id, item) for item in counted)
            return Thread(id=thread_id, agent=header.agent, events=events, labels=header.labels)
        raise StoreUnavailableError(
            f"could not load thread {thread_id!r}: {torn}. An append still landing looks like this and a retry "
            f"reads it whole; if it persists, the item was deleted: inspect PK={_pk(thread_id)} and restore it"
        )

    def _query(self, key_condition: str, values: Item) -> list[Item]:
        """All items of a strongly consistent Query, following ``LastEvaluatedKey`` (1 MB per page)."""
        items: list[Item] = []
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "ConsistentRead": True,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": values,
        }
        while True:
            page = self._db.query(**request)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return items
            request["ExclusiveStartKey"] = start

    def _decode(self, thread_id: str, item: Item) -> Event:
        seq = _seq_of(item)
        raw: str | bytes
        try:
            if "s3" in item:
                raw = self._download(thread_id, seq, item["s3"]["S"], int(item["size"]["N"]))
            else:
                raw = item["e"]["S"]
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise CorruptEventError(thread_id, seq, f"expected a JSON object, got {type(data).__name__}")
            event = parse_event(data, thread_id=thread_id)
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
            # UnknownSchemaVersionError passes through: it already names the thread and seq, and says what to do.
            raise CorruptEventError(thread_id, seq, _short(exc)) from None
        if event.seq != seq:
            raise CorruptEventError(thread_id, seq, f"the event inside says seq={event.seq}")
        return event

    def _download(self, thread_id: str, seq: int, key: str, size: int) -> bytes:
        try:
            body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except self._s3.exceptions.NoSuchKey:
            raise CorruptEventError(thread_id, seq, f"its payload s3://{self._bucket}/{key} is missing") from None
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AccessDenied":
                raise  # throttling and 5xx: _retryable makes them StoreUnavailableError
            # Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied rather than 404 NoSuchKey.
            raise CorruptEventError(
                thread_id,
                seq,
                f"its payload s3://{self._bucket}/{key} is missing or unreadable (S3 answered AccessDenied); check "
                "that the object exists and that the function's role may s3:GetObject it (and s3:ListBucket the "
                "bucket, without which S3 reports a missing key as AccessDenied)",
            ) from None
        if len(body) != size:
            raise CorruptEventError(thread_id, seq, f"s3://{self._bucket}/{key} has {len(body)} bytes, not {size}")
        return body

    # -- writing -----------------------------------------------------------------------------------------------

    def _encode(self, thread_id: str, event: Event) -> _Encoded:
        text = json.dumps(dump_event(event), separators=(",", ":"), ensure_ascii=False)
        body = text.encode()
        item: Item = {"PK": _s(_pk(thread_id)), "SK": _s(_sk(event.seq)), "t": _s(event.type)}
        if len(body) <= self._offload_bytes:
            item["e"] = _s(text)
            return _Encoded(item, None)
        # The content hash keeps a losing writer's upload from overwriting the winner's payload at the same seq.
        digest = hashlib.sha256(body).hexdigest()[:16]
        key = f"threads/{thread_id}/events/{event.seq:0{_SEQ_DIGITS}d}-{digest}.json"
        item.update(s3=_s(key), preview=_s(text[: self._preview_chars]), size=_n(len(body)))
        return _Encoded(item, (key, body))

    def _upload(self, encoded: Sequence[_Encoded]) -> None:
        """Put offloaded payloads before the transaction, so a committed item never points at nothing."""
        inline = sum(len(enc.item["e"]["S"].encode()) for enc in encoded if "e" in enc.item)
        if inline > _MAX_TRANSACTION_BYTES:
            raise ValueError(
                f"{inline} bytes of events in one write; a DynamoDB transaction takes 4 MB: split them over appends"
            )
        for enc in encoded:
            if enc.offload is not None:
                key, body = enc.offload
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")

    def _expires_at(self, now: datetime) -> int:
        assert self._ttl_days is not None
        return int((now + timedelta(days=self._ttl_days)).timestamp())

    def _remember(self, thread: Thread) -> None:
        if not self._cache_size:
            return
        self._cache[thread.id] = thread
        self._cache.move_to_end(thread.id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


_INDEX_KEYS = ("PK", "SK", "status", "updated_at")
_STATUS_OF: dict[str, Status] = {status: status for status in STATUSES}


def _index_key(item: Item) -> Item:
    """The GSI's ExclusiveStartKey for a header item: the index keys plus the table keys."""
    return {name: item[name] for name in _INDEX_KEYS}


def _positions(raw: Any, statuses: Sequence[str]) -> dict[str, Any]:
    """Each status's position from a decoded cursor: absent (from the start), ``"end"`` or a GSI key."""
    bad = InvalidCursorError("the cursor is not one this API issued; start again without it")
    if not isinstance(raw, dict):
        raise bad
    for name, position in raw.items():
        if name not in statuses:
            raise bad
        if position == "end":
            continue
        if not (
            isinstance(position, dict)
            and set(position) == set(_INDEX_KEYS)
            and all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in position.values())
            and position["status"]["S"] == name
            and position["PK"]["S"].startswith(_THREAD)
        ):
            raise bad
    return dict(raw)


def _listing(item: Item) -> ThreadListing:
    updated = datetime.fromisoformat(item["updated_at"]["S"])
    return ThreadListing(
        thread_id=item["PK"]["S"].removeprefix(_THREAD),
        agent=item["agent"]["S"],
        status=_STATUS_OF[item["status"]["S"]],
        updated_at=updated if updated.tzinfo is not None else updated.replace(tzinfo=UTC),
    )


def _check_batch(thread_id: str, count: int) -> None:
    if count > MAX_EVENTS_PER_WRITE:
        raise ValueError(
            f"thread {thread_id}: {count} events in one write; at most {MAX_EVENTS_PER_WRITE} fit in one "
            "DynamoDB transaction (100 items, one is the header): split them over several appends"
        )


def _split(items: list[Item]) -> tuple[Item | None, list[Item]]:
    """The header (``None`` if absent) and the event items, in seq order."""
    header = next((item for item in items if item["SK"]["S"] == _META), None)
    return header, [item for item in items if item["SK"]["S"].startswith(_EV)]


def _seq_of(item: Item) -> int:
    return int(item["SK"]["S"].removeprefix(_EV))


def _reasons(exc: Any) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])
    return reasons


def _reason(exc: Any, index: int) -> str | None:
    reasons = _reasons(exc)
    code: str | None = reasons[index].get("Code") if index < len(reasons) else None
    return code


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
