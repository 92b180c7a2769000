"""One list of items, worked by any number of processes: ``WorkQueue``, on a Redis stream.

Three processes that each fetch every item do the work three times. A work
queue lets them share it: the items are listed ONCE into a Redis stream, and
each is handed to whichever worker is free. It is built on a stream's
*consumer group*, which remembers which consumer holds which item:

- ``fill`` -- the first process to arrive lists the items (``XADD``, one
  entry per item, in one transaction with the count ``total``); the others
  see ``total`` and go straight to work. A lock (``SET NX`` with an expiry)
  makes sure one process lists; if it dies while listing, the lock expires
  and another lists.
- ``claim`` -- ``XREADGROUP`` hands out entries no consumer has seen. An
  entry stays *pending* under its consumer until ``XACK``; when the fresh
  entries run out, ``XAUTOCLAIM`` takes over entries pending for more than
  ``claim_idle`` seconds: those of a worker that died (or is very slow).
- ``store`` -- the result goes into a hash keyed by the item (``HSETNX``:
  the first result written wins), THEN the entry is acknowledged. A worker
  killed between the two leaves a stored result and a pending entry: the
  item may be fetched again, but its result is kept once.
- the run is over when the hash holds a result for each of the ``total``
  items; ``results()`` gives them in listing order, each exactly once.

An item fetched twice (a slow worker's entry claimed by another) costs one
request more, never a line more.

    >>> queue = WorkQueue("redis://127.0.0.1:6379/0", "items-2024")
    >>> await queue.fill(list_the_items)        # only the first process lists
    >>> async for item in queue.claim():        # until every item has a result
    ...     await queue.store(item, {"id": item, "status": 200, "data": ...})
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

__all__ = ["QueueError", "QueueProgress", "WorkQueue"]

log = logging.getLogger(__name__)

GROUP = "workers"
KEY_PREFIX = "course:queue:"


class QueueError(RuntimeError):
    """Redis could not be reached, or the queue is not in a state to do what was asked."""


@dataclass(frozen=True)
class QueueProgress:
    """How far a queue is: items listed (None: not yet), results stored, entries still pending."""

    total: int | None
    done: int
    pending: int

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


def _key(item: Any) -> str:
    """An item as a hash field: its JSON text (7 and "7" are different items)."""
    return json.dumps(item, sort_keys=True)


class WorkQueue:
    """A queue of items in Redis, named ``name``, shared by every process that opens it.

    ``claim_idle``: seconds an entry may stay pending under one consumer
    before another takes it over (a dead worker's items come back after
    that long). ``batch``: entries read per round trip.
    """

    def __init__(
        self,
        redis_url: str,
        name: str,
        *,
        consumer: str | None = None,
        claim_idle: float = 60.0,
        batch: int = 10,
        poll: float = 0.2,
        list_lock: float = 120.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        if not name:
            raise ValueError("a WorkQueue needs a non-empty name (processes with the same name share it)")
        if not claim_idle > 0:
            raise ValueError(f"claim_idle is a number of seconds > 0, got {claim_idle}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.redis_url = redis_url
        self.name = name
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle = claim_idle
        self.batch = batch
        self.poll = poll
        self.list_lock = list_lock
        base = KEY_PREFIX + name
        self.stream, self.results_key, self.meta, self.lock = (
            f"{base}:items",
            f"{base}:results",
            f"{base}:meta",
            f"{base}:listing",
        )
        self._client = client if client is not None else aioredis.Redis.from_url(redis_url, decode_responses=True)
        self._entries: defaultdict[str, list[str]] = defaultdict(list)  # item key -> entry ids held here
        #: Entries this consumer took over from another (``XAUTOCLAIM``).
        self.reclaimed = 0

    # -- listing ------------------------------------------------------------------------

    async def fill(self, list_items: Callable[[], AsyncIterable[Any] | Iterable[Any]]) -> bool:
        """List the items into the queue unless some process did; True if this call listed them.

        ``list_items()`` is called only by the process that lists. The others
        wait here until the listing is in.
        """
        try:
            await self._ensure_group()
            while True:
                if await self._client.hexists(self.meta, "total"):
                    return False
                if await self._client.set(self.lock, self.consumer, nx=True, px=int(self.list_lock * 1000)):
                    break
                await asyncio.sleep(self.poll)
            source = list_items()
            items = [item async for item in source] if isinstance(source, AsyncIterable) else list(source)
            async with self._client.pipeline(transaction=True) as pipe:
                for item in items:
                    pipe.xadd(self.stream, {"item": json.dumps(item)})
                pipe.hset(self.meta, "total", len(items))
                pipe.delete(self.lock)
                await pipe.execute()
        except RedisError as error:
            raise QueueError(f"the work queue {self.name!r} at {self.redis_url} failed: {error}") from error
        log.info("listed %d items into the queue %s", len(items), self.name)
        return True

    async def _ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    # -- working ------------------------------------------------------------------------

    async def claim(self) -> AsyncIterator[Any]:
        """Items for this worker, one at a time, until every item of the queue has a result.

        Fresh entries first; then entries idle for ``claim_idle`` s under
        another consumer. While others still hold entries, this waits (and
        takes them over if their consumer stops acknowledging).
        """
        try:
            while True:
                entries = await self._read_fresh()
                if not entries:
                    entries = await self._take_over()
                if entries:
                    for entry_id, fields in entries:
                        item = json.loads(fields["item"])
                        self._entries[_key(item)].append(entry_id)
                        yield item
                    continue
                progress = await self.progress()
                if progress.finished:
                    return
                if progress.total is None:
                    raise QueueError(f"the work queue {self.name!r} has no items listed: call fill() first")
                await asyncio.sleep(self.poll)
        except RedisError as error:
            raise QueueError(f"the work queue {self.name!r} at {self.redis_url} failed: {error}") from error

    async def _read_fresh(self) -> list[tuple[str, dict[str, str]]]:
        answer: Any = await self._client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch)
        return [entry for _stream, entries in answer or [] for entry in entries if entry[1] is not None]

    async def _take_over(self) -> list[tuple[str, dict[str, str]]]:
        answer = await self._client.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=int(self.claim_idle * 1000), count=self.batch
        )
        entries = [entry for entry in answer[1] if entry[1] is not None]  # deleted entries come back as None
        if entries:  # a worker killed between storing a result and acknowledging it: nothing to redo
            items = [_key(json.loads(fields["item"])) for _entry_id, fields in entries]
            stored = await self._client.hmget(self.results_key, items)
            done = [entry[0] for entry, text in zip(entries, stored, strict=True) if text is not None]
            if done:
                await self._client.xack(self.stream, GROUP, *done)
                entries = [entry for entry, text in zip(entries, stored, strict=True) if text is None]
        if entries:
            self.reclaimed += len(entries)
            log.info("took over %d entries idle for %.0f s or more", len(entries), self.claim_idle)
        return entries

    async def store(self, item: Any, result: Any) -> bool:
        """Keep ``item``'s result (a JSON-able value) unless one is kept already; acknowledge its entries.

        Returns True if this result is the one kept.
        """
        key = _key(item)
        entry_ids = self._entries.pop(key, [])
        try:
            kept = bool(await self._client.hsetnx(self.results_key, key, json.dumps(result)))
            if entry_ids:
                await self._client.xack(self.stream, GROUP, *entry_ids)
        except RedisError as error:
            raise QueueError(f"the work queue {self.name!r} at {self.redis_url} failed: {error}") from error
        return kept

    # -- reading ------------------------------------------------------------------------

    async def progress(self) -> QueueProgress:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hget(self.meta, "total")
            pipe.hlen(self.results_key)
            pipe.xpending(self.stream, GROUP)
            total, done, pending = await pipe.execute()
        return QueueProgress(None if total is None else int(total), int(done), int(pending["pending"]))

    async def results(self) -> AsyncIterator[tuple[Any, Any | None]]:
        """``(item, result)`` for every listed item, in listing order; ``result`` is None if none is stored."""
        last = "-"
        while True:
            entries: Any = await self._client.xrange(self.stream, min=last, max="+", count=1000)
            if last != "-":
                entries = entries[1:]  # the range is inclusive: the first is the previous page's last
            if not entries:
                return
            items = [json.loads(fields["item"]) for _entry_id, fields in entries]
            stored = await self._client.hmget(self.results_key, [_key(item) for item in items])
            for item, text in zip(items, stored, strict=True):
                yield item, None if text is None else json.loads(text)
            last = entries[-1][0]

    async def clear(self) -> None:
        """Delete the queue, its results and its listing (a fresh start under the same name)."""
        await self._client.delete(self.stream, self.results_key, self.meta, self.lock)

    async def aclose(self) -> None:
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"WorkQueue({self.redis_url!r}, {self.name!r}, consumer={self.consumer!r})"
