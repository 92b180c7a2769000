"""Stages joined by queues: each stage's unpacker fans one response out into many items.

A stage is a ``WorkerPool`` (its own request builder, unpacker and number of
workers); a ``Pipeline`` joins stages with bounded queues, so a fast stage
never runs far ahead of a slow one. Give the stages the *same* limiter and
gate: the server's rate limit counts every request, whichever stage sent it.

The lesson's "list, then fetch each", in a few lines::

    limiter, gate = RateLimiter(500), Gate()
    listing = WorkerPool(lambda url: Request(url), unpack=lambda url, r: r.json(),
                         workers=1, limiter=limiter, gate=gate, name="list")
    fetching = WorkerPool(api.url + "/items/{item}", workers=32,
                          limiter=limiter, gate=gate, name="fetch")
    report = await Pipeline(listing, fetching).run([api.url + "/items"])

``await list_then_fetch(base_url, rate)`` builds and runs exactly that pipeline.

``run_stages`` is the stage runner both use (``WorkerPool.run`` is a
pipeline of one stage): a producer puts the items on the first queue, each
stage's workers take from their queue and put on the next, and one end
marker per worker tells every stage, in turn, that the work is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Iterable, Sequence, Sized
from typing import Any

import aiohttp

from course.http import new_session
from course.limiters import Gate, RateLimiter
from course.progress import progress_bar
from course.records import Failure, Outcome, Request, Response, Result, RunReport
from course.workers import _END, Sink, WorkerPool

__all__ = ["Pipeline", "list_then_fetch", "run_stages"]


class Pipeline:
    """Run stages (``WorkerPool``s) one after another, joined by bounded queues."""

    def __init__(self, *stages: WorkerPool, progress: bool = False) -> None:
        if not stages:
            raise ValueError("a Pipeline needs at least one stage (a WorkerPool)")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"give each stage its own name= (stats are kept per stage), got {names}")
        self.stages = stages
        self.progress = progress

    async def run(
        self, items: Iterable[Any] | AsyncIterable[Any], *, on_outcome: Sink | None = None
    ) -> RunReport:
        """Feed ``items`` to the first stage; report the last stage's results and every failure.

        A stage with an open session of its own (``async with stage:``) sends
        through it; the others share one session, opened for this run.
        """
        without = [stage for stage in self.stages if stage.session is None]
        if not without:
            return await run_stages(self.stages, items, on_outcome=on_outcome, progress=self.progress)
        connections = sum(stage.workers for stage in without)
        async with new_session(connections, max(stage.timeout for stage in without)) as shared:
            return await run_stages(
                self.stages, items, session=shared, on_outcome=on_outcome, progress=self.progress
            )


async def run_stages(
    stages: Sequence[WorkerPool],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    session: aiohttp.ClientSession | None = None,
    on_outcome: Sink | None = None,
    progress: bool = False,
) -> RunReport:
    """Run ``stages`` joined by bounded queues; each stage's unpacker feeds the next.

    The unpacker of every stage but the last returns an iterable of items for
    the next stage (one response -> many items). Failures of any stage, and
    results of the last, are the run's outcomes. Each stage sends through its
    own open ``session`` if it has one (``async with`` it), else through
    ``session``. ``WorkerPool.run`` and ``Pipeline.run`` see to that.
    """
    if not stages:
        raise ValueError("run_stages needs at least one stage")
    sessions = [_session_for(stage, session) for stage in stages]
    report = RunReport()
    total = len(items) if isinstance(items, Sized) and len(stages) == 1 else None
    bar = progress_bar(total, stages[-1].name) if progress else None

    def finish(outcome: Outcome) -> Awaitable[None] | None:
        if isinstance(outcome, Result):
            report.succeeded += 1
            if on_outcome is None:
                report.results.append(outcome)
        else:
            report.failures.append(outcome)
        if bar is not None:
            bar.update(1)
        return None if on_outcome is None else on_outcome(outcome)

    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=stage.queue_size) for stage in stages]

    def forward_to(index: int) -> Sink:
        next_queue = queues[index + 1]

        async def forward(outcome: Outcome) -> None:
            if isinstance(outcome, Failure):
                done = finish(outcome)
                if done is not None:
                    await done
                return
            for next_item in outcome.data or ():
                await next_queue.put(next_item)

        return forward

    async def run_stage(index: int) -> None:
        stage = stages[index]
        emit = finish if index == len(stages) - 1 else forward_to(index)
        await stage.serve(sessions[index], queues[index], emit)
        if index + 1 < len(stages):
            for _ in range(stages[index + 1].workers):
                await queues[index + 1].put(_END)

    for stage in stages:
        stage.stats.start()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_produce(items, queues[0], stages[0].workers))
            for index in range(len(stages)):
                group.create_task(run_stage(index))
    except BaseExceptionGroup as group:
        # A task failed and the others were cancelled. When every task that
        # failed failed the same way (one ListingError; each worker's call of
        # a broken sink), raise that error as itself, not wrapped in groups.
        first = _single_cause(group)
        if first is None:
            raise
        raise first from group
    finally:
        if bar is not None:
            bar.close()
    report.stats = {stage.name: stage.stats.snapshot() for stage in stages}
    return report


def _session_for(stage: WorkerPool, shared: aiohttp.ClientSession | None) -> aiohttp.ClientSession:
    session = stage.session if stage.session is not None else shared
    if session is None:
        raise RuntimeError(
            f"stage {stage.name!r} has no open session: use `async with` it, or WorkerPool.run / Pipeline.run"
        )
    return session


async def _produce(items: Iterable[Any] | AsyncIterable[Any], queue: asyncio.Queue[Any], ends: int) -> None:
    if isinstance(items, AsyncIterable):
        async for item in items:
            await queue.put(item)
    else:
        for item in items:
            await queue.put(item)
    for _ in range(ends):
        await queue.put(_END)


def _single_cause(group: BaseExceptionGroup) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    kinds = {(type(error), str(error)) for error in leaves}
    return leaves[-1] if len(kinds) == 1 else None


def _whole_list(url: str, response: Response) -> Any:
    return response.json()


async def list_then_fetch(
    base_url: str, rate: float, *, per: float = 1.0, workers: int = 32, progress: bool = False
) -> RunReport:
    """Stage 1 lists ``base_url/items``; stage 2 fetches ``base_url/items/{id}`` for each id."""
    limiter, gate = RateLimiter(rate, per), Gate()
    listing = WorkerPool(Request, unpack=_whole_list, workers=1, limiter=limiter, gate=gate, name="list")
    fetching = WorkerPool(
        base_url.rstrip("/") + "/items/{item}", workers=workers, limiter=limiter, gate=gate, name="fetch"
    )
    pipeline = Pipeline(listing, fetching, progress=progress)
    return await pipeline.run([base_url.rstrip("/") + "/items"])
