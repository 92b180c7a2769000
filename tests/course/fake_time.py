"""A fake-time event loop for tests: timers fire in order, at once, on a virtual clock.

``FakeTimeLoop`` is an ordinary asyncio selector loop whose ``time()`` reads a
virtual clock. Whenever the loop has nothing ready to run and would wait for
its next timer, the clock jumps to that timer instead of waiting. So
``await asyncio.sleep(3600)`` returns at once, with ``loop.time()`` exactly
3600 s later (never earlier: a timer runs exactly at its time), and code
that reads ``loop.time()`` and waits with
``asyncio.sleep`` (as ``course.limiters`` does) computes the same times on
every run, however busy the machine. Running code takes no virtual time;
``stall(seconds)`` moves the clock while running nothing, like a ``time.sleep``
that blocks the loop.

Real I/O still works while no timer is pending (the loop then blocks as
usual), but while one is pending the clock jumps to it rather than wait for a
socket: keep real servers out of fake-time tests.

    @on_fake_time
    async def test_an_hour_passes_at_once() -> None:
        loop = fake_loop()
        await asyncio.sleep(3600)
        loop.stall(0.5)                 # as if the loop were blocked for 0.5 s
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVarTuple, Unpack

__all__ = ["START", "FakeTimeLoop", "fake_loop", "on_fake_time"]

P = ParamSpec("P")
Ts = TypeVarTuple("Ts")

START = 1000.0  # not 0: code must not mistake "the beginning" for a clock reading


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, asked to wait for ``timeout`` s with no I/O ready, advances ``now`` instead."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.now = start

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:  # nothing scheduled (real wait for I/O), or a poll
            return super().select(timeout)
        ready = super().select(0)
        if not ready:
            self.now += timeout  # asyncio asked to wait until its next timer: be there
        return ready


class FakeTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: idle waits for a timer take no real time."""

    def __init__(self, start: float = START) -> None:
        self._virtual = _JumpingSelector(start)
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # asyncio runs a timer that is due within one clock tick (1 ns); on a real clock time
        # moves on by itself, here it would not: a timer that runs moves the clock to its time.
        def at_its_time(*args: *Ts) -> None:
            if when > self._virtual.now:
                self._virtual.now = when
            callback(*args)

        return super().call_at(when, at_its_time, *args, context=context)

    def stall(self, seconds: float) -> None:
        """Move the clock ``seconds`` on without running anything, as a blocking call would."""
        if seconds < 0:
            raise ValueError(f"time only moves forward: stall({seconds})")
        self._virtual.now += seconds


def fake_loop() -> FakeTimeLoop:
    """The running loop, which must be a ``FakeTimeLoop`` (use ``@on_fake_time``)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, FakeTimeLoop):
        raise TypeError(f"not on fake time ({type(loop).__name__}): decorate the test with @on_fake_time")
    return loop


def on_fake_time(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test on a fresh ``FakeTimeLoop`` (for pytest it becomes a plain test)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with asyncio.Runner(loop_factory=FakeTimeLoop) as runner:
            runner.run(test(*args, **kwargs))

    return run
