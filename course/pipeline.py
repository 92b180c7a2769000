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
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

from course.limiters import Gate, RateLimiter
from course.records import Request, Response
from course.workers import RunReport, Sink, WorkerPool, new_session, run_stages

__all__ = ["Pipeline", "list_then_fetch"]


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
        """Feed ``items`` to the first stage; report the last stage's results and every failure."""
        borrowed = [stage for stage in self.stages if stage.session is None]
        session = None
        if borrowed:
            session = new_session(
                sum(stage.workers for stage in borrowed), max(stage.timeout for stage in borrowed)
            )
            for stage in borrowed:
                stage.session = session
        try:
            return await run_stages(self.stages, items, on_outcome=on_outcome, progress=self.progress)
        finally:
            for stage in borrowed:
                stage.session = None
            if session is not None:
                await session.close()


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
