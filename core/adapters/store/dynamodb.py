"""The DynamoDB thread store: one item per commit, the header when listings need it, a snapshot for new containers.

Layout (one table, string keys ``PK``/``SK``):

- ``PK=THREAD#<id>, SK=META``: the header: agent, labels, status (the fold's, denormalised for listings on the
  ``status-updated`` index), created_at/updated_at, ``version`` (the number of events when the header was last
  written: a lower bound, the events are the truth) and an optional ``expires_at`` TTL.
- ``PK=THREAD#<id>, SK=EV#<seq:010d>``: the events one commit appended, from ``seq`` on: one event as compact JSON
  in ``e`` and its type in ``t``; several (``n`` of them) as a JSON array in ``e``, their types comma-separated in
  ``t``. When the JSON is larger than ``offload_bytes`` it lives in S3; the item keeps the key (``s3``), a
  ``preview`` and the ``size``, so no item ever approaches DynamoDB's 400 KB limit.
- ``PK=THREAD#<id>, SK=SNAP``: the latest snapshot, for a container that has not seen the thread: the thread as
  :func:`core.kernel.compaction.compact` keeps it at ``version`` (the folds' accumulators, the first event and the
  events the context may still show), zlib-compressed JSON in ``b``. Events too big to copy there are named by seq
  and read from their own items. The seen results' digests and the repeat counts are stored as what the kept events
  do not already imply (most of them, as the context shows most calls and results), and added back on reading; a
  snapshot written before that (no ``format``) is read as it is.

An append is ONE conditional PutItem of its commit's item (``attribute_not_exists`` on ``EV#<expected version>``):
two writers at the same version race for the same key and one loses, so the log can never fork. It is a
transaction (the item and the header) only when the header must change: the status moved, or ``updated_at`` is
older than ``touch_every``. So the header's status is never behind the events, listings are ordered by activity to
within ``touch_every``, and a step that changes nothing listed writes one item. ``version`` in the header lags;
a reader counts the events.

``load`` reads the header and every event item (the record: replay, fork, export read it). ``load_recent`` (what a
step reads) reads the header and the snapshot, then the events after it: what a new container reads does not grow
with the thread. A warm container keeps the threads it has seen and reads only what is newer than its copy. The
snapshot is written after an append, once the events since the last one are worth about as many bytes as it
(``snapshot_bytes`` at least); it is conditional on being newer than the stored one, never covers an event that is
not committed, and is only ever an optimisation: one that cannot be read is ignored and the log read instead.

This module imports neither boto3 nor botocore: the low-level clients are injected, built once per container
by the caller. Their types come from the ``mypy-boto3-*`` stubs (a dev dependency), imported for the checker
only, so the Lambda package and its cold start do not carry them.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import replace as _replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pydantic import ValidationError

from core.adapters.store.transient import unavailable_is_retryable
from core.kernel.compaction import compact
from core.kernel.context import ContextOptions
from core.kernel.events import Event, HumanRequest, HumanResponse, ToolCall, ToolResult, dump_event, parse_event, utcnow
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
from core.kernel.thread import Base, Fold, StaleCarry, Status, Thread, call_signature, result_digest

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
    )
    from mypy_boto3_s3 import S3Client

MAX_EVENTS_PER_WRITE = 99
"""Events in one append (one item) or one create (a transaction: at most 100 items, one is the header)."""
MAX_INLINE_BYTES = 350_000
"""The largest ``offload_bytes`` allowed: an item (event JSON plus keys) must stay under DynamoDB's 400 KB."""
_MAX_TRANSACTION_BYTES = 4_000_000
"""TransactWriteItems refuses requests whose items add up to more than 4 MB."""
MAX_SNAPSHOT_BYTES = 300_000
"""A snapshot larger than this (compressed) is not written: its item must stay under DynamoDB's 400 KB."""
_SNAPSHOT_EVENT_BYTES = 16_000
"""An event larger than this (as JSON) is named in a snapshot by its seq, not copied into it."""
_SNAPSHOT_FORMAT = 2
"""The snapshot blob's layout: 2 stores the repeat counts and the seen results' digests as what its kept events do
not already imply (:func:`_implied`); a blob without ``format`` (written before) stores them whole."""

STATUS_INDEX = "status-updated"
"""The GSI that lists threads: partition ``status``, sort ``updated_at``; sparse, only headers carry ``status``."""
_LIST_QUERIES = 10
"""At most this many Query calls per status for one listing page (an agent filter may skip many headers)."""

_META = "META"
_SNAP = "SNAP"
_EV = "EV#"
_THREAD = "THREAD#"
_SEQ_DIGITS = 10
_LAST_EV = f"{_EV}{'9' * _SEQ_DIGITS}"
_LATEST_ITEMS = 10
"""Items in the first page of a read from the end: the snapshot, the header and the newest event items (a short
thread whole)."""
_FULL_LOAD_ATTEMPTS = 5
_FULL_LOAD_BACKOFF_SECONDS = 0.02
"""A torn read is re-read after 20, 40, 80 and 160 ms: 300 ms in all, far longer than a transaction takes to land."""
_THROTTLED_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded"})
"""Cancellation reasons that mean "too fast", not "someone else wrote": retried as unavailable, not as a conflict."""

_log = logging.getLogger("stepfold.store")

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
    status: str | None
    updated_at: datetime | None

    @classmethod
    def from_item(cls, thread_id: str, item: Item) -> _Header:
        try:
            labels = {key: value["S"] for key, value in item.get("labels", {}).get("M", {}).items()}
            updated = item.get("updated_at", {}).get("S")
            return cls(
                agent=item["agent"]["S"],
                labels=labels,
                version=int(item["version"]["N"]),
                status=item.get("status", {}).get("S"),
                updated_at=_aware(datetime.fromisoformat(updated)) if updated else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptEventError(thread_id, _META, f"header is malformed: {exc!r}") from None


@dataclass(frozen=True)
class _Encoded:
    """A commit ready to write: its item, the S3 object to upload first when it is offloaded, its JSON's size."""

    item: Item
    offload: tuple[str, bytes] | None
    size: int


@dataclass(frozen=True)
class _Known:
    """A thread this container has read or written: the thread (whole or compacted), its fold, what the stored
    header says, and what a new container would read of it (the snapshot and the events after it)."""

    thread: Thread
    folded: Fold
    status: str | None
    touched: datetime | None
    tail_bytes: int
    snapshot_bytes: int = 0
    next_try: int = 0
    """``tail_bytes`` at which to try a snapshot again after a thread that could not be compacted."""


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
    """:class:`~core.kernel.store.ThreadStore` on one DynamoDB table, with large payloads in S3.

    ``touch_every``: how stale the header's ``updated_at`` may get while a thread's status does not change (the
    listings' order is exact to within it). ``snapshot_bytes``: the events a new container may have to read after
    the snapshot before a new one is written. ``snapshot_window_tokens``: the context a snapshot keeps events for
    (above the agents' ``ContextOptions.max_tokens``, else their steps read the whole log; see
    :mod:`core.kernel.compaction`).
    """

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
        touch_every: timedelta = timedelta(minutes=1),
        snapshot_bytes: int = 16_000,
        snapshot_window_tokens: int = ContextOptions().max_tokens * 5 // 4,
    ) -> None:
        if not 0 < offload_bytes <= MAX_INLINE_BYTES:
            raise ValueError(f"offload_bytes must be between 1 and {MAX_INLINE_BYTES} (DynamoDB items stop at 400 KB)")
        if snapshot_bytes < 1 or snapshot_window_tokens < 1:
            raise ValueError("snapshot_bytes and snapshot_window_tokens must be positive")
        self._table = table
        self._db = dynamodb
        self._s3 = s3
        self._bucket = bucket
        self._offload_bytes = offload_bytes
        self._preview_chars = preview_chars
        self._cache_size = cache_size if cache else 0
        self._cache: OrderedDict[str, _Known] = OrderedDict()
        self._ttl_days = ttl_days
        self._clock = clock
        self._touch_every = touch_every
        self._snapshot_bytes = snapshot_bytes
        self._window_tokens = snapshot_window_tokens

    # -- the Protocol ------------------------------------------------------------------------------------------

    @_retryable
    def create(self, thread: Thread) -> Thread:
        """Write the header and every event in one transaction; :class:`ThreadExistsError` if the id is taken."""
        if thread.base is not None:
            raise ValueError(f"thread {thread.id} is compacted (read from a snapshot): create takes a whole thread")
        _check_batch(thread.id, len(thread.events))
        encoded = [self._encode(thread.id, [event]) for event in thread.events]
        self._upload(encoded)
        now = self._clock()
        folded = Fold.of(thread)
        status = folded.state().status
        header: Item = {
            "PK": _s(_pk(thread.id)),
            "SK": _s(_META),
            "agent": _s(thread.agent),
            "labels": {"M": {key: _s(value) for key, value in thread.labels.items()}},
            "version": _n(thread.version),
            "status": _s(status),
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
        self._remember(_Known(thread, folded, status, now, sum(enc.size for enc in encoded)))
        return thread

    @_retryable
    def load(self, thread_id: str) -> Thread:
        """The whole thread; a warm copy is refreshed with only the events written since it was read."""
        return self._read(thread_id, recent=False).thread

    @_retryable
    def load_recent(self, thread_id: str) -> Thread:
        """The thread as a step needs it: from the warm copy, else from the header, the snapshot and the events
        after it (compacted: see :mod:`core.kernel.compaction`), else whole."""
        return self._read(thread_id, recent=True).thread

    @_retryable
    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        """Write ``events`` as one item at ``EV#<expected_version>`` if no other writer has one there (else
        :class:`VersionConflictError`). The header is written with it (one transaction) only when its status or
        ``updated_at`` must change. Returns the thread as it now is, whole or compacted as this container holds it."""
        _check_batch(thread_id, len(events))
        known = self._cache.get(thread_id)
        if known is None or known.thread.version != expected_version:
            known = self._read(thread_id, recent=True)
        if known.thread.version != expected_version:
            raise VersionConflictError(thread_id, expected_version, known.thread.version)
        updated = known.thread.extend(events)
        if not events:
            return updated
        folded = known.folded.copy().feed(events)
        status = folded.state().status
        encoded = self._encode(thread_id, events)
        self._upload([encoded])
        now = self._clock()
        touch = status != known.status or known.touched is None or now - known.touched >= self._touch_every
        try:
            if touch:
                self._commit_with_header(
                    thread_id, expected_version, encoded, version=updated.version, status=status, now=now
                )
            else:
                self._commit(thread_id, expected_version, encoded)
        except (VersionConflictError, ThreadNotFoundError):
            self._cache.pop(thread_id, None)
            raise
        header = (status, now) if touch else (known.status, known.touched)
        known = _Known(updated, folded, *header, known.tail_bytes + encoded.size, known.snapshot_bytes, known.next_try)
        self._remember(known)
        self._snapshot_if_due(known)
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

    def _read(self, thread_id: str, *, recent: bool) -> _Known:
        """The thread as this container knows it, brought up to date: a warm copy (whole, or either kind when
        ``recent``), else the snapshot and what follows it (``recent``), else the whole log."""
        known = self._cache.get(thread_id)
        if known is not None and (recent or known.thread.base is None):
            refreshed = self._refresh(known)
            if refreshed is not None:
                self._remember(refreshed)
                return refreshed
        fresh = self._load_latest(thread_id) if recent else None
        if fresh is None:
            fresh = self._load_full(thread_id)
        self._remember(fresh)
        return fresh

    def _refresh(self, known: _Known) -> _Known | None:
        """The known thread brought up to date by one Query of the event items after it and the header.

        ``META`` sorts after every ``EV#`` key, so ``SK BETWEEN EV#<known version> AND META`` returns exactly the new
        items and the header: the bytes read depend on what changed, not on the thread's length. ``None`` when
        they do not line up (a transaction still landing, or the table was edited): read it afresh instead.
        """
        thread = known.thread
        items = self._query(
            "PK = :pk AND SK BETWEEN :from AND :to",
            {":pk": _s(_pk(thread.id)), ":from": _s(_sk(thread.version)), ":to": _s(_META)},
        )
        header_item, event_items = _split(items)
        if header_item is None:
            self._cache.pop(thread.id, None)
            raise ThreadNotFoundError(thread.id)
        header = _Header.from_item(thread.id, header_item)
        new, size = self._decode_run(thread.id, event_items, thread.version)
        if new is None or header.version > thread.version + len(new):
            return None
        if not new:
            return _replace(known, status=header.status, touched=header.updated_at)
        return _replace(
            known,
            thread=thread.extend(new),
            folded=known.folded.copy().feed(new),
            status=header.status,
            touched=header.updated_at,
            tail_bytes=known.tail_bytes + size,
        )

    def _load_full(self, thread_id: str) -> _Known:
        """Every event item of the thread and its header, page by page; read again while a transaction shows
        half-landed.

        A Query is read-committed item by item, not isolated from a transaction committing at the same moment (a
        create, or an append that writes the header): it may return the header and not yet the events. The events
        must run without a gap from seq 0 to at least the header's ``version`` (they may run past it: the header is
        written only when its status changes). A gap that stays is :class:`StoreUnavailableError`, which Step
        Functions retries: from here, a transaction still landing and a deleted item look the same, and the first
        is the one real DynamoDB produces; the message says what to inspect for the second.
        """
        torn = ""
        for attempt in range(_FULL_LOAD_ATTEMPTS):
            if attempt:
                time.sleep(_FULL_LOAD_BACKOFF_SECONDS * 2 ** (attempt - 1))
            items = self._query(
                "PK = :pk AND SK BETWEEN :from AND :to",
                {":pk": _s(_pk(thread_id)), ":from": _s(_EV), ":to": _s(_META)},
            )
            header_item, event_items = _split(items)
            if header_item is None:
                raise ThreadNotFoundError(thread_id)
            header = _Header.from_item(thread_id, header_item)
            end = _contiguous_end(event_items, 0)
            if end < len(event_items) or _end_of_run(event_items, 0) < header.version:
                missing = _sk(_end_of_run(event_items[:end], 0))
                torn = (
                    f"its header counts {header.version} events but item SK={missing} was not there in "
                    f"{attempt + 1} consistent reads"
                )
                continue
            events, size = self._decode_run(thread_id, event_items, 0)
            assert events is not None  # the run was checked above
            thread = Thread(id=thread_id, agent=header.agent, events=tuple(events), labels=header.labels)
            return _Known(thread, Fold.of(thread), header.status, header.updated_at, size)
        raise StoreUnavailableError(
            f"could not load thread {thread_id!r}: {torn}. An append still landing looks like this and a retry "
            f"reads it whole; if it persists, the item was deleted: inspect PK={_pk(thread_id)} and restore it"
        )

    def _load_latest(self, thread_id: str) -> _Known | None:
        """The thread from its end: one Query, newest key first, returns the snapshot, the header and the newest
        event items (``SNAP`` and ``META`` sort after every ``EV#``); a second reads the events between the
        snapshot and those, when there are more. Without a snapshot, the pages go on to the log's first event (a
        short thread is one Query). None when the log must be read from its start: a snapshot that cannot be used
        (it is only ever a copy), or what came back does not line up (a transaction still landing)."""
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "ConsistentRead": True,
            "KeyConditionExpression": "PK = :pk AND SK >= :from",
            "ExpressionAttributeValues": {":pk": _s(_pk(thread_id)), ":from": _s(_EV)},
            "ScanIndexForward": False,
            "Limit": _LATEST_ITEMS,
        }
        page = self._db.query(**request)
        items, more = page.get("Items", []), page.get("LastEvaluatedKey")
        header_item = next((item for item in items if item["SK"]["S"] == _META), None)
        snapshot = next((item for item in items if item["SK"]["S"] == _SNAP), None)
        if header_item is None:
            raise ThreadNotFoundError(thread_id)
        header = _Header.from_item(thread_id, header_item)
        if snapshot is None:
            if more:  # no snapshot: the rest of the log, on from where this page stopped
                del request["Limit"]
                items += self._query_pages(request, more)
            newest = [item for item in reversed(items) if item["SK"]["S"].startswith(_EV)]
            events, size = self._decode_run(thread_id, newest, 0)
            if events is None or header.version > len(events):
                return None
            thread = Thread(id=thread_id, agent=header.agent, events=tuple(events), labels=header.labels)
            return _Known(thread, Fold.of(thread), header.status, header.updated_at, size)
        try:
            restored = self._restore(thread_id, header, snapshot)
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            _log.warning(
                "a thread's snapshot cannot be used; reading its whole log instead",
                extra={"thread_id": thread_id, "error": _short(exc)},
            )
            return None
        newest = [item for item in reversed(items) if item["SK"]["S"].startswith(_EV)]
        start = restored.version
        after = [item for item in newest if _seq_of(item) >= start]
        oldest = _seq_of(newest[0]) if newest else None
        if more and (oldest is None or oldest > start):
            upto = _sk(oldest - 1) if oldest is not None else _LAST_EV
            values: Item = {":pk": _s(_pk(thread_id)), ":from": _s(_sk(start)), ":to": _s(upto)}
            after = self._query("PK = :pk AND SK BETWEEN :from AND :to", values) + after
        events, size = self._decode_run(thread_id, after, start)
        if events is None or header.version > start + len(events):
            return None
        thread = restored.extend(events)
        return _Known(thread, Fold.of(thread), header.status, header.updated_at, size, len(snapshot["b"]["B"]))

    def _restore(self, thread_id: str, header: _Header, item: Item) -> Thread:
        """The compacted thread a snapshot item holds (either layout, see :data:`_SNAPSHOT_FORMAT`)."""
        data = json.loads(zlib.decompress(item["b"]["B"]))
        layout = data.get("format")
        if layout not in (None, _SNAPSHOT_FORMAT):
            raise ValueError(f"snapshot layout {layout!r}, this code reads {_SNAPSHOT_FORMAT} and the one before")
        if int(data["base"]["version"]) != int(item["version"]["N"]):
            raise ValueError(f"snapshot says version {item['version']['N']}, its content {data['base']['version']}")
        events = [
            self._event_at(thread_id, raw) if isinstance(raw, int) else parse_event(raw, thread_id=thread_id)
            for raw in data["events"]
        ]
        raw_base = _whole_base(data["base"], events) if layout is not None else data["base"]
        base = Base.parse(raw_base, thread_id)
        return Thread(id=thread_id, agent=header.agent, events=tuple(events), labels=header.labels, base=base)

    def _event_at(self, thread_id: str, seq: int) -> Event:
        """One event a snapshot names instead of copying, from the item that holds it (the last to start at or
        before ``seq``)."""
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "ConsistentRead": True,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :from AND :to",
            "ExpressionAttributeValues": {
                ":pk": _s(_pk(thread_id)),
                ":from": _s(_sk(max(0, seq - MAX_EVENTS_PER_WRITE + 1))),
                ":to": _s(_sk(seq)),
            },
            "ScanIndexForward": False,
            "Limit": 1,
        }
        found = self._db.query(**request).get("Items", [])
        events = self._decode(thread_id, found[0])[0] if found else []
        event = next((e for e in events if e.seq == seq), None)
        if event is None:
            raise ValueError(f"the snapshot names event seq={seq}, which no item holds")
        return event

    def _decode_run(self, thread_id: str, items: list[Item], start: int) -> tuple[list[Event] | None, int]:
        """The events of ``items`` if they run from ``start`` without a gap (else None), and their JSON's bytes."""
        if _contiguous_end(items, start) < len(items):
            return None, 0
        events: list[Event] = []
        size = 0
        for item in items:
            decoded, bytes_ = self._decode(thread_id, item)
            events.extend(decoded)
            size += bytes_
        return events, size

    def _query(self, key_condition: str, values: Item) -> list[Item]:
        """All items of a strongly consistent Query, following ``LastEvaluatedKey`` (1 MB per page)."""
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "ConsistentRead": True,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": values,
        }
        return self._query_pages(request)

    def _query_pages(self, request: QueryInputTypeDef, start: Item | None = None) -> list[Item]:
        """The items of ``request``'s pages, from ``start`` (a ``LastEvaluatedKey``) when given."""
        items: list[Item] = []
        while True:
            if start:
                request["ExclusiveStartKey"] = start
            page = self._db.query(**request)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    def _decode(self, thread_id: str, item: Item) -> tuple[list[Event], int]:
        """The events one item holds, and the bytes of their JSON."""
        seq = _seq_of(item)
        raw: str | bytes
        try:
            count = _count_of(item)
            if "s3" in item:
                raw = self._download(thread_id, seq, item["s3"]["S"], int(item["size"]["N"]))
            else:
                raw = item["e"]["S"]
            data = json.loads(raw)
            if "n" in item:
                if not isinstance(data, list) or len(data) != count:
                    raise CorruptEventError(thread_id, seq, f"expected a JSON array of {count} events")
                found = data
            elif isinstance(data, dict):
                found = [data]
            else:
                raise CorruptEventError(thread_id, seq, f"expected a JSON object, got {type(data).__name__}")
            events = [parse_event(one, thread_id=thread_id) for one in found]
        except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
            # UnknownSchemaVersionError passes through: it already names the thread and seq, and says what to do.
            raise CorruptEventError(thread_id, seq, _short(exc)) from None
        for expected, event in enumerate(events, start=seq):
            if event.seq != expected:
                raise CorruptEventError(thread_id, seq, f"the event inside says seq={event.seq}, not {expected}")
        return events, len(raw)

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

    def _encode(self, thread_id: str, events: Sequence[Event]) -> _Encoded:
        """One commit's item: one event as a JSON object, several as a JSON array."""
        texts = [json.dumps(dump_event(event), separators=(",", ":"), ensure_ascii=False) for event in events]
        text = texts[0] if len(texts) == 1 else f"[{','.join(texts)}]"
        body = text.encode()
        first = events[0].seq
        item: Item = {"PK": _s(_pk(thread_id)), "SK": _s(_sk(first)), "t": _s(",".join(e.type for e in events))}
        if len(events) > 1:
            item["n"] = _n(len(events))
        if len(body) <= self._offload_bytes:
            item["e"] = _s(text)
            return _Encoded(item, None, len(body))
        # The content hash keeps a losing writer's upload from overwriting the winner's payload at the same seq.
        digest = hashlib.sha256(body).hexdigest()[:16]
        key = f"threads/{thread_id}/events/{first:0{_SEQ_DIGITS}d}-{digest}.json"
        item.update(s3=_s(key), preview=_s(text[: self._preview_chars]), size=_n(len(body)))
        return _Encoded(item, (key, body), len(body))

    def _upload(self, encoded: Sequence[_Encoded]) -> None:
        """Put offloaded payloads before the write, so a committed item never points at nothing."""
        inline = sum(len(enc.item["e"]["S"].encode()) for enc in encoded if "e" in enc.item)
        if inline > _MAX_TRANSACTION_BYTES:
            raise ValueError(
                f"{inline} bytes of events in one write; a DynamoDB transaction takes 4 MB: split them over appends"
            )
        for enc in encoded:
            if enc.offload is not None:
                key, body = enc.offload
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")

    def _commit(self, thread_id: str, expected_version: int, encoded: _Encoded) -> None:
        """The commit's item alone, if no writer has one at this seq: the one write of most steps."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item=encoded.item,
                ConditionExpression="attribute_not_exists(SK)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._db.exceptions.ConditionalCheckFailedException as exc:
            raise VersionConflictError(thread_id, expected_version, _end_of(exc.response.get("Item"))) from None

    def _commit_with_header(
        self, thread_id: str, expected_version: int, encoded: _Encoded, *, version: int, status: Status, now: datetime
    ) -> None:
        """The header and the commit's item in one transaction: the header's status never runs behind. (A Query
        may see the header before the item: a torn read, which the readers read again.)"""
        names = {"#v": "version", "#s": "status", "#u": "updated_at"}
        values: Item = {":new": _n(version), ":status": _s(status), ":now": _s(now.isoformat())}
        update = "SET #v = :new, #s = :status, #u = :now"
        if self._ttl_days is not None:
            names["#x"] = "expires_at"
            values[":exp"] = _n(self._expires_at(now))
            update += ", #x = :exp"
        writes: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"PK": _s(_pk(thread_id)), "SK": _s(_META)},
                    "UpdateExpression": update,
                    "ConditionExpression": "attribute_exists(PK) AND #v < :new",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": encoded.item,
                    "ConditionExpression": "attribute_not_exists(SK)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        try:
            self._db.transact_write_items(TransactItems=writes)
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = _reasons(exc)
            codes = {r.get("Code") for r in reasons}
            if "ConditionalCheckFailed" not in codes:
                if "TransactionConflict" in codes and not codes & _THROTTLED_REASONS:
                    # another transaction was writing the same thread at that instant: the same race, same answer
                    raise VersionConflictError(thread_id, expected_version) from None
                # Throttled items (nothing was written): _retryable makes it StoreUnavailableError; anything else
                # (ValidationError, ItemCollectionSizeLimitExceeded) is not weather and goes up as it is.
                raise
            if _reason(exc, 1) == "ConditionalCheckFailed":
                raise VersionConflictError(thread_id, expected_version, _end_of(reasons[1].get("Item"))) from None
            header = reasons[0].get("Item") if reasons else None
            if not header:
                raise ThreadNotFoundError(thread_id) from None
            # The header counts this version already but no item holds it: a load says what to inspect.
            actual = int(header["version"]["N"]) if "version" in header else None
            raise VersionConflictError(thread_id, expected_version, actual) from None

    def _snapshot_if_due(self, known: _Known) -> None:
        """Write a snapshot of the thread once what a new container would read after the last one is worth more
        bytes than it (or ``snapshot_bytes``). A failure is logged, not raised: the events are committed, and a
        snapshot is only ever a copy."""
        if known.tail_bytes < max(self._snapshot_bytes, known.snapshot_bytes, known.next_try):
            return
        thread = known.thread
        blob = b""
        compacted: Thread | None = None
        try:
            compacted = compact(thread, window_tokens=self._window_tokens, folded=known.folded)
            if compacted is not None:
                blob = _snapshot_blob(compacted)
            if not blob or len(blob) > MAX_SNAPSHOT_BYTES:
                if blob:
                    _log.warning(
                        "a thread's snapshot is too large to store; new containers read its whole log",
                        extra={"thread_id": thread.id, "bytes": len(blob)},
                    )
                self._remember(_replace(known, next_try=known.tail_bytes + self._snapshot_bytes))
                return
            self._db.put_item(
                TableName=self._table,
                Item={"PK": _s(_pk(thread.id)), "SK": _s(_SNAP), "version": _n(thread.version), "b": {"B": blob}},
                ConditionExpression="attribute_not_exists(SK) OR #v < :v",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":v": _n(thread.version)},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            pass  # another writer stored a newer one: this container's tail is at most as long
        except Exception as exc:  # noqa: BLE001 - the append succeeded; a snapshot is an optimisation
            _log.warning(
                "could not write a thread's snapshot; new containers read more of its log until one is written",
                extra={"thread_id": thread.id, "error": _short(exc)},
            )
            self._remember(_replace(known, next_try=known.tail_bytes + self._snapshot_bytes))
            return
        held = compacted if compacted is not None and thread.base is not None else thread
        self._remember(_replace(known, thread=held, tail_bytes=0, snapshot_bytes=len(blob), next_try=0))

    def _expires_at(self, now: datetime) -> int:
        assert self._ttl_days is not None
        return int((now + timedelta(days=self._ttl_days)).timestamp())

    def _remember(self, known: _Known) -> None:
        if not self._cache_size:
            return
        self._cache[known.thread.id] = known
        self._cache.move_to_end(known.thread.id)
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
    return ThreadListing(
        thread_id=item["PK"]["S"].removeprefix(_THREAD),
        agent=item["agent"]["S"],
        status=_STATUS_OF[item["status"]["S"]],
        updated_at=_aware(datetime.fromisoformat(item["updated_at"]["S"])),
    )


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _check_batch(thread_id: str, count: int) -> None:
    if count > MAX_EVENTS_PER_WRITE:
        raise ValueError(
            f"thread {thread_id}: {count} events in one write; at most {MAX_EVENTS_PER_WRITE} go in one commit "
            "(one item; a create is one DynamoDB transaction of 100 items, one is the header): split them over "
            "several appends"
        )


def _split(items: list[Item]) -> tuple[Item | None, list[Item]]:
    """The header (``None`` if absent) and the event items, in seq order."""
    header = next((item for item in items if item["SK"]["S"] == _META), None)
    return header, [item for item in items if item["SK"]["S"].startswith(_EV)]


def _seq_of(item: Item) -> int:
    return int(item["SK"]["S"].removeprefix(_EV))


def _count_of(item: Item) -> int:
    """How many events an item holds (a malformed count reads as 1; decoding the item then says what is wrong)."""
    try:
        return int(item["n"]["N"]) if "n" in item else 1
    except (KeyError, TypeError, ValueError):
        return 1


def _contiguous_end(items: list[Item], start: int) -> int:
    """How many of ``items`` (in key order) run on from ``start`` without a gap."""
    expected = start
    for i, item in enumerate(items):
        if _seq_of(item) != expected:
            return i
        expected += _count_of(item)
    return len(items)


def _end_of_run(items: list[Item], start: int) -> int:
    """The seq after the last event of ``items`` that run on from ``start`` (``start`` if none do)."""
    end = start
    for item in items[: _contiguous_end(items, start)]:
        end = _seq_of(item) + _count_of(item)
    return end


def _end_of(item: Item | None) -> int | None:
    """At least how many events the thread has, from the item a losing writer found at its seq."""
    return _seq_of(item) + _count_of(item) if item and "SK" in item else None


def _snapshot_blob(thread: Thread) -> bytes:
    """A compacted thread as a snapshot item stores it: compressed JSON; events too big to copy named by seq; the
    repeat counts and seen results' digests as what the kept events do not imply (:func:`_implied`)."""
    events: list[Any] = []
    for event in thread.events:
        data = dump_event(event)
        big = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False)) > _SNAPSHOT_EVENT_BYTES
        events.append(event.seq if big else data)
    assert thread.base is not None
    base = thread.base.dump()
    seen, counts = _implied(thread.events)
    carried = dict(thread.base.fold.signatures)
    rest = {signature: n - counts.get(signature, 0) for signature, n in carried.items()}
    rest.update((signature, -n) for signature, n in counts.items() if signature not in carried)
    del base["fold"]["signatures"], base["stale"]["seen"]  # renamed, so code that reads only format 1 refuses it
    base["fold"]["signatures_rest"] = [[signature, n] for signature, n in rest.items() if n]
    base["stale"]["seen_rest"] = "".join(sorted(thread.base.stale.seen - seen))
    base["stale"]["seen_not"] = "".join(sorted(seen - thread.base.stale.seen))
    text = json.dumps(
        {"format": _SNAPSHOT_FORMAT, "base": base, "events": events}, separators=(",", ":"), ensure_ascii=False
    )
    return zlib.compress(text.encode(), 6)


def _implied(events: Sequence[Event]) -> tuple[set[str], dict[str, int]]:
    """What a snapshot's kept events say of its accumulators, as the folds count them: the digests of their results
    (``Staleness.seen``) and the repeat counts of their calls since the last limit review (``Fold.signatures``).

    The context shows most results and calls, so most of both accumulators is implied: a snapshot stores only the
    difference, and :func:`_whole_base` adds it back. Exact whatever this implies, since the difference is stored
    both ways (digests implied but not seen, counts below zero); implying more than the folds hold only costs bytes.
    """
    seen: set[str] = set()
    counts: dict[str, int] = {}
    requests: dict[str, HumanRequest] = {}
    for event in events:
        if isinstance(event, ToolResult):
            seen.add(result_digest(event))
        elif isinstance(event, ToolCall) and not event.prefetch:
            signature = call_signature(event.tool, event.args)
            counts[signature] = counts.get(signature, 0) + 1
        elif isinstance(event, HumanRequest):
            requests[event.approval_id] = event
        elif isinstance(event, HumanResponse):
            request = requests.get(event.approval_id)
            if request is not None and request.origin == "limit":
                counts.clear()  # as Fold.feed: a limit review starts the repeat counts again
    return seen, counts


def _whole_base(raw: dict[str, Any], events: Sequence[Event]) -> dict[str, Any]:
    """A format-2 snapshot's base as ``Base.parse`` reads it: the implied part of its accumulators added back."""
    seen, counts = _implied(events)
    fold, stale = dict(raw["fold"]), dict(raw["stale"])
    for signature, n in fold.pop("signatures_rest"):
        counts[str(signature)] = counts.get(str(signature), 0) + int(n)
    fold["signatures"] = [[signature, n] for signature, n in counts.items() if n]
    digests = StaleCarry.parse({"seen": stale.pop("seen_rest"), "prefetched": [], "stale": 0}).seen
    refused = StaleCarry.parse({"seen": stale.pop("seen_not"), "prefetched": [], "stale": 0}).seen
    stale["seen"] = "".join(sorted((seen | digests) - refused))
    return {**raw, "fold": fold, "stale": stale}


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
