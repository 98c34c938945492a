"""The store-and-forward queue: every uplink message passes through it, in order, until the broker has it.

Messages are numbered twice when they are put in: `qid`, the queue position (global, increasing), and `seq`, the
number within their stream (telemetry, state, plan, notifications), which goes into the payload so a consumer
finds gaps and QoS 1 duplicates. `boot` (a counter of EMS starts) rides along: a gap across a change of `boot`
after an unclean stop is where the messages of the last moments before a power cut went.

Writes are batched for the SD card. A message waits in memory; only one still undelivered after
`flush_interval_s` (the broker is away, or slower than we produce) is written to SQLite, in one transaction per
batch. While the broker keeps up, nothing is written at all, except a sequence reservation every `SEQ_BLOCK`
messages of a stream. So a power cut loses at most a flush interval of messages; a clean stop (`close()`)
writes everything still queued, in-flight messages included, and a restart replays it first. Every disk
message is older than every memory message (a flush moves all of memory), so the queue's head is disk first,
then memory.

The bound (`max_bytes`, payloads plus a per-row allowance) is kept on disk: beyond it the oldest messages are
dropped, counted per stream and persisted, and `on_drop` is told. A database that cannot be opened is moved
aside and a new one started (reported); one that fails later leaves the queue in memory, bounded the same way.
SQLite runs in one thread of its own, never on the event loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from .topics import STREAMS

log = logging.getLogger(__name__)

T = TypeVar("T")

ROW_OVERHEAD_BYTES = 48
"""What a row costs on disk beyond its payload (key, stream, seq, b-tree cell), for the size bound."""
MEMORY_MAX_MESSAGES = 2000
MEMORY_MAX_BYTES = 2 * 1024 * 1024
"""Memory beyond either forces a flush now (a burst, or a broker slower than we produce)."""
SEQ_BLOCK = 1000
"""Sequence numbers are reserved on disk this many at a time: after a crash numbering resumes past the
reservation, so a number is never given to two different messages."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (qid INTEGER PRIMARY KEY, stream TEXT NOT NULL, seq INTEGER NOT NULL,
                                   payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
"""


@dataclass(frozen=True, slots=True)
class Message:
    qid: int
    stream: str
    seq: int
    payload: bytes


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as null, for JSON that every consumer can parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(body: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(body), separators=(",", ":"), allow_nan=False, default=str)
    return text.encode()


class Outbox:
    def __init__(self, path: Path, max_bytes: int, on_drop: Callable[[Mapping[str, int]], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self._monotonic = monotonic
        self._db: sqlite3.Connection | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._memory: deque[tuple[Message, float]] = deque()
        self._memory_bytes = 0
        self._disk_count = 0
        self._disk_bytes = 0
        self._disk_min_qid = 0
        self._next_qid = 1
        self._next_seq: dict[str, int] = {s: 1 for s in STREAMS}
        self._reserved: dict[str, int] = {s: 1 for s in STREAMS}
        self._reserve_due = False
        self._io = asyncio.Lock()
        self._nonempty = asyncio.Event()
        self._flush_due = asyncio.Event()
        self._disk_failed = False
        self.boot = 0
        self.dropped: dict[str, int] = {s: 0 for s in STREAMS}
        self.meta: dict[str, Any] = {}
        self.transactions = 0
        self.recovered_from: Path | None = None

    # -- opening and closing ----------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._db is not None

    async def open(self) -> None:
        """Open (or create) the database, count what is queued, start a new boot, reserve sequence numbers."""
        if self._db is not None:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mqtt-outbox")
        self._report_drops(await self._run(self._open_db))

    async def close(self) -> None:
        """Write everything still queued (in flight or not) and the counters; a restart replays it first."""
        if self._db is None:
            return
        async with self._io:
            items = [m for m, _ in self._memory]
            try:
                self._report_drops(await self._run(self._write, items, True))
                self._memory.clear()
                self._memory_bytes = 0
            except sqlite3.Error:
                log.exception("could not write %d queued MQTT messages at shutdown: they are lost", len(items))
            await self._run(self._close_db)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None, "outbox not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- the queue --------------------------------------------------------------------------------------------
    def put(self, stream: str, body: Mapping[str, Any]) -> Message:
        """Queue a message of `stream` (on the loop; no I/O): it gets its `seq` and `boot` here."""
        seq = self._next_seq[stream]
        self._next_seq[stream] = seq + 1
        message = Message(self._next_qid, stream, seq, encode({"seq": seq, "boot": self.boot, **body}))
        self._next_qid += 1
        self._memory.append((message, self._monotonic()))
        self._memory_bytes += len(message.payload)
        self._nonempty.set()
        if seq + 1 >= self._reserved[stream] - SEQ_BLOCK // 2:
            self._reserve_due = True
            self._flush_due.set()
        if len(self._memory) > MEMORY_MAX_MESSAGES or self._memory_bytes > MEMORY_MAX_BYTES:
            self._flush_due.set()
        return message

    def last_seq(self, stream: str) -> int:
        """The sequence number of the newest message of `stream` (0: none yet)."""
        return self._next_seq[stream] - 1

    def __len__(self) -> int:
        return self._disk_count + len(self._memory)

    async def head(self, n: int) -> list[Message]:
        """The oldest `n` queued messages (at least one: waits for it), without removing them."""
        while True:
            if self._disk_count:
                async with self._io:
                    if self._disk_count:
                        rows = await self._run(self._read_head, n)
                        if len(rows) == n:
                            return rows
                        # All of the disk was read; memory may still hold a copy of what a cancelled flush wrote.
                        last = rows[-1].qid if rows else 0
                        fresh = (m for m, _ in self._memory if m.qid > last)
                        return rows + list(islice(fresh, n - len(rows)))
            if self._memory:
                return [m for m, _ in islice(self._memory, n)]
            self._nonempty.clear()
            await self._nonempty.wait()

    async def ack(self, upto_qid: int) -> None:
        """The broker has every message up to queue position `upto_qid`: forget them."""
        async with self._io:
            while self._memory and self._memory[0][0].qid <= upto_qid:
                message, _ = self._memory.popleft()
                self._memory_bytes -= len(message.payload)
            if self._disk_count and self._disk_min_qid <= upto_qid:
                try:
                    await self._run(self._delete_upto, upto_qid)
                except sqlite3.Error:
                    log.exception("could not delete delivered MQTT messages; they will be sent again")

    # -- batched writes ---------------------------------------------------------------------------------------
    def oldest_age_s(self) -> float:
        return self._monotonic() - self._memory[0][1] if self._memory else 0.0

    async def flush(self) -> None:
        """Move every message in memory to disk, in one transaction (with the sequence counters)."""
        async with self._io:
            items = [m for m, _ in self._memory]
            if not items and not self._reserve_due:
                return
            try:
                dropped = await self._run(self._write, items, False)
            except sqlite3.Error as exc:
                if not self._disk_failed:
                    log.error("the MQTT outbox cannot be written (%s): queueing in memory only", exc)
                self._disk_failed = True
                self._bound_memory()
                return
            self._disk_failed = False
            for _ in items:
                message, _ = self._memory.popleft()
                self._memory_bytes -= len(message.payload)
            self._report_drops(dropped)

    async def run_flusher(self, interval_s: Callable[[], float]) -> None:
        """Flush whenever the oldest message in memory has waited `interval_s()`, or at once when memory is full
        or a sequence reservation is due. Runs until cancelled (the service's task group)."""
        while True:
            step = max(0.05, min(1.0, interval_s() / 4))
            try:
                await asyncio.wait_for(self._flush_due.wait(), step)
            except asyncio.TimeoutError:
                pass
            forced = self._flush_due.is_set()
            self._flush_due.clear()
            if forced or (self._memory and self.oldest_age_s() >= interval_s()):
                await self.flush()

    def _bound_memory(self) -> None:
        """Without a disk, memory keeps the bound: the oldest go first, counted."""
        dropped: dict[str, int] = {}
        while self._memory and (self._memory_bytes > self.max_bytes or len(self._memory) > 50 * MEMORY_MAX_MESSAGES):
            message, _ = self._memory.popleft()
            self._memory_bytes -= len(message.payload)
            dropped[message.stream] = dropped.get(message.stream, 0) + 1
        self._count_drops(dropped)

    def _count_drops(self, dropped: Mapping[str, int]) -> None:
        for stream, n in dropped.items():
            self.dropped[stream] = self.dropped.get(stream, 0) + n
        self._report_drops(dropped)

    def _report_drops(self, dropped: Mapping[str, int]) -> None:
        if not dropped:
            return
        log.warning("MQTT outbox full: dropped the oldest %s", ", ".join(f"{n} {s}" for s, n in dropped.items()))
        if self.on_drop is not None:
            self.on_drop(dropped)

    # -- small persistent facts (e.g. which Home Assistant entities we announced) ---------------------------
    async def set_meta(self, key: str, value: Any) -> None:
        self.meta[key] = value
        async with self._io:
            await self._run(self._write_meta, {key: json.dumps(value)})

    # -- status -----------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"queued": len(self), "queued_on_disk": self._disk_count,
                "queued_bytes": self._disk_bytes + self._memory_bytes, "max_bytes": self.max_bytes,
                "file_bytes": self.file_bytes(), "dropped": sum(self.dropped.values()),
                "dropped_by_stream": dict(self.dropped), "boot": self.boot, "disk_transactions": self.transactions,
                "disk_ok": not self._disk_failed}

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total

    # -- in the outbox thread ---------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable to the last checkpointed commit, few fsyncs
        db.executescript(SCHEMA)
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            db.close()
            raise sqlite3.DatabaseError("quick_check failed")
        return db

    def _open_db(self) -> dict[str, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
            log.error("MQTT outbox %s is unreadable (%s): moved to %s, starting an empty one", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                except FileNotFoundError:
                    pass
            self.recovered_from = aside
            db = self._connect()
        try:
            os.chmod(self.path, 0o600)  # telemetry of a customer's plant
        except OSError:
            pass
        self._db = db
        meta = {}
        for key, value in db.execute("SELECT key, value FROM meta"):
            try:
                meta[key] = json.loads(value)
            except (TypeError, ValueError):
                log.warning("MQTT outbox: unreadable meta %s ignored", key)
        clean = meta.get("clean", True)
        for stream in STREAMS:
            stored_next = int(meta.get(f"next_seq.{stream}", 1))
            reserved = int(meta.get(f"reserved_seq.{stream}", stored_next))
            # After a crash, messages up to the reservation may have gone out: numbering resumes above them.
            self._next_seq[stream] = stored_next if clean else max(stored_next, reserved)
            self.dropped[stream] = int(meta.get(f"dropped.{stream}", 0))
        self.boot = int(meta.get("boot", 0)) + 1
        self.meta = {k: v for k, v in meta.items() if not k.startswith(("next_seq.", "reserved_seq.", "dropped."))
                     and k not in ("boot", "clean")}
        self._refresh_disk_stats()
        self._next_qid = max(self._next_qid, self._disk_max_qid() + 1)
        self._reserve_due = True
        # The boot, clean=false and the first reservations in one transaction (and the bound, should it be smaller now).
        return self._write([], False)

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _disk_max_qid(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT COALESCE(MAX(qid), 0) FROM outbox").fetchone()[0])

    def _refresh_disk_stats(self) -> None:
        assert self._db is not None
        count, size, lowest = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0), COALESCE(MIN(qid), 0) FROM outbox").fetchone()
        self._disk_count, self._disk_min_qid = int(count), int(lowest)
        self._disk_bytes = int(size) + ROW_OVERHEAD_BYTES * self._disk_count

    def _counters(self, clean: bool) -> dict[str, str]:
        if self._reserve_due or clean:
            for stream in STREAMS:
                self._reserved[stream] = self._next_seq[stream] + (0 if clean else SEQ_BLOCK)
            self._reserve_due = False
        values: dict[str, Any] = {"boot": self.boot, "clean": clean}
        for stream in STREAMS:
            values[f"next_seq.{stream}"] = self._next_seq[stream]
            values[f"reserved_seq.{stream}"] = self._reserved[stream]
            values[f"dropped.{stream}"] = self.dropped[stream]
        return {k: json.dumps(v) for k, v in values.items()}

    def _write_meta(self, values: Mapping[str, str]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())
        self.transactions += 1

    def _write(self, items: list[Message], clean: bool) -> dict[str, int]:
        """One transaction: the messages, the bound enforced (drops counted and persisted), the counters.
        Returns what was dropped, per stream."""
        db = self._db
        assert db is not None
        dropped: dict[str, int] = {}
        with db:
            db.execute("BEGIN")
            # OR REPLACE: a flush cancelled after its commit leaves its messages in memory too; writing them
            # again (at the next flush or at close) must not fail.
            db.executemany("INSERT OR REPLACE INTO outbox (qid, stream, seq, payload) VALUES (?, ?, ?, ?)",
                           [(m.qid, m.stream, m.seq, m.payload) for m in items])
            self._refresh_disk_stats()
            while self._disk_bytes > self.max_bytes and self._disk_count:
                freed, last = 0, None
                for qid, stream, size in db.execute(
                        "SELECT qid, stream, length(payload) FROM outbox ORDER BY qid LIMIT 500"):
                    freed += size + ROW_OVERHEAD_BYTES
                    last = qid
                    dropped[stream] = dropped.get(stream, 0) + 1
                    if self._disk_bytes - freed <= self.max_bytes:
                        break
                if last is None:
                    break
                db.execute("DELETE FROM outbox WHERE qid <= ?", (last,))
                self._refresh_disk_stats()
            for stream, n in dropped.items():
                self.dropped[stream] += n
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", self._counters(clean).items())
        self.transactions += 1
        return dropped

    def _read_head(self, n: int) -> list[Message]:
        assert self._db is not None
        return [Message(int(q), str(s), int(seq), bytes(p)) for q, s, seq, p in
                self._db.execute("SELECT qid, stream, seq, payload FROM outbox ORDER BY qid LIMIT ?", (n,))]

    def _delete_upto(self, upto_qid: int) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM outbox WHERE qid <= ?", (upto_qid,))
        self.transactions += 1
        self._refresh_disk_stats()
