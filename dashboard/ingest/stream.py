"""Reading the event stream as a member of the monitors' consumer group.

Delivery is at least once: an entry stays pending until ``ack``; a monitor that dies leaves its
entries pending, and they are claimed by a live monitor once idle for ``claim_idle_ms`` (or at once
by ``monitor --drain``). Acknowledged entries are deleted, so the stream holds only unprocessed work
and its length is the backlog.

The task processes cap that length (``TASKTRAIL_STREAM_MAX_ENTRIES``) and count in
``<stream>:trimmed`` what they drop past it; an entry trimmed while pending reads back with no
fields, and is acknowledged like any other (it is already counted there).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis

from tasktrail.events import Rejected

GROUP = "tasktrail-monitor"
DEAD_LETTER_CAP = 100_000
RAW_BYTES = 65536  # what a dead letter keeps of the item

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass
class StreamConsumer:
    client: redis.Redis
    stream: str
    group: str = GROUP
    consumer: str = ""
    claim_idle_ms: int = 30_000
    _own_pending_done: bool = False
    _claim_cursor: bytes | str = "0-0"
    _last_claim: float = 0.0

    def __post_init__(self) -> None:
        if not self.consumer:
            self.consumer = f"{socket.gethostname()}-{os.getpid()}"

    @property
    def dead_stream(self) -> str:
        return self.stream + ":dead"

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int | None) -> list[Entry]:
        """The next entries to process: ours left pending, then stale ones, then new ones.

        ``block_ms`` None returns at once when nothing is there (0 would block for ever)."""
        if not self._own_pending_done:
            entries = self._read_group("0", count, None)
            if entries:
                return entries
            self._own_pending_done = True
        if time.monotonic() - self._last_claim >= max(self.claim_idle_ms / 1000 / 2, 0.5):
            claimed = self._claim(count)
            if claimed:
                return claimed
        return self._read_group(">", count, block_ms)

    def _read_group(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        reply: Any = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        if not reply:
            return []
        _, entries = reply[0]
        return [(entry_id, fields or {}) for entry_id, fields in entries]

    def _claim(self, count: int) -> list[Entry]:
        reply: Any = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        next_cursor, entries = reply[0], reply[1]
        self._claim_cursor = next_cursor
        if next_cursor in (b"0-0", "0-0"):
            self._last_claim = time.monotonic()  # went round the whole pending list
        return [(entry_id, fields or {}) for entry_id, fields in entries if entry_id]

    def ack(self, entry_ids: Sequence[bytes]) -> None:
        if not entry_ids:
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, *entry_ids)
        pipe.xdel(self.stream, *entry_ids)
        pipe.execute()

    def dead_letter(self, entry_id: bytes, rejected: Sequence[Rejected]) -> None:
        """Keep what could not be processed, with the reason, for a person to look at. A dead
        letter summing up several items has their number in ``count``. The decoder keeps an
        entry's dead letters few (``tasktrail.events.MAX_REJECTS_KEPT`` and summaries)."""
        pipe = self.client.pipeline(transaction=False)
        for item in rejected:
            fields: dict[Any, Any] = {
                "entry": entry_id,
                "reason": item.reason[:1000],
                "raw": _raw_bytes(item.raw),
                "at": str(time.time()),
            }
            if item.count != 1:
                fields["count"] = item.count
            pipe.xadd(self.dead_stream, fields, maxlen=DEAD_LETTER_CAP, approximate=True)
        pipe.execute()

    def backlog(self) -> dict[str, int]:
        """Entries not yet delivered to any monitor (lag) and delivered but unacknowledged."""
        for group in self.client.xinfo_groups(self.stream):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                return {"lag": int(group.get("lag") or 0), "pending": int(group["pending"])}
        return {"lag": 0, "pending": 0}


def _raw_bytes(raw: Any) -> bytes:
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw[:RAW_BYTES])
    try:
        text = json.dumps(_sample(raw), default=_short_repr, ensure_ascii=False)
    except Exception:
        try:
            text = repr(raw)
        except RecursionError:  # nested deeper than Python can print: keep what it is
            text = f"<{type(raw).__name__} nested too deeply to print>"
    return text.encode("utf-8", "backslashreplace")[:65536]


def _sample(raw: Any, depth: int = 0) -> Any:
    """What a dead letter shows of ``raw``: at most 64 items of a map or list, text and bytes cut
    to 4 KiB, 4 levels deep. An entry's fields may hold 16 MiB: never printed whole."""
    if isinstance(raw, bytes | bytearray):
        return _short_repr(raw)
    if isinstance(raw, str):
        return raw[:4096]
    if depth >= 4 and isinstance(raw, dict | list | tuple):
        return f"<{type(raw).__name__} of {len(raw)} items>"
    if isinstance(raw, dict):
        shown = {_key(k): _sample(v, depth + 1) for k, v in islice(raw.items(), 64)}
        if len(raw) > 64:
            shown["…"] = f"{len(raw) - 64} more"
        return shown
    if isinstance(raw, list | tuple):
        items = [_sample(v, depth + 1) for v in raw[:64]]
        return [*items, f"… {len(raw) - 64} more"] if len(raw) > 64 else items
    return raw


def _key(key: Any) -> str:
    if isinstance(key, bytes):
        return key[:200].decode("utf-8", "backslashreplace")
    return key[:200] if isinstance(key, str) else _short_repr(key)


def _short_repr(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        text = repr(bytes(value[:4096]))
        return text + f"… ({len(value)} bytes)" if len(value) > 4096 else text
    try:
        return repr(value)[:4096]
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to print>"
