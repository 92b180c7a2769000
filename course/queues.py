"""The lesson's throttled queue, written correctly: ``get()`` is spaced to a rate.

Workers that share one ``ThrottledQueue`` receive items no faster than
``rate`` per ``per`` seconds in total, so the queue itself is the rate limit.
What the correct version takes care of:

- one clock for every timestamp: the event loop's (``loop.time()``,
  monotonic seconds), or the ``clock`` it is given;
- the lock lives in its own attribute, not in the name of a method;
- an item is taken *before* its slot is reserved, so a slot is never spent
  while the queue is empty (which would let waiting workers burst later);
- the spacing is an absolute schedule (``RateLimiter``), so late wake-ups do
  not lower the rate;
- a getter cancelled while it waits for its slot puts the item back at the
  front: cancelling a worker never loses an item.

    >>> queue = ThrottledQueue(rate=100)
    >>> await queue.put("a")
    >>> await queue.get()            # returns at most 100 times a second
    'a'
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from course.limiters import RateLimiter

__all__ = ["ThrottledQueue"]

T = TypeVar("T")


class ThrottledQueue(asyncio.Queue[T]):
    """An ``asyncio.Queue`` whose ``get`` returns at most ``rate`` items per ``per`` s."""

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        maxsize: int = 0,
        *,
        margin: float = 0.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(maxsize)
        self.limiter = RateLimiter(rate, per, margin=margin, clock=clock)
        self._one_getter = asyncio.Lock()

    async def get(self) -> T:
        async with self._one_getter:  # getters take slots in the order they arrive
            item: T = await super().get()
            try:
                await self.limiter.acquire()  # the item leaves now: that is the event being spaced
            except BaseException:
                # Cancelled while waiting for the slot: the item goes back to
                # the front (asyncio.Queue keeps items in the deque _queue).
                self._queue.appendleft(item)  # type: ignore[attr-defined]
                raise
            return item
