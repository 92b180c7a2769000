"""A fixed pool of workers reading a bounded queue: the lesson's approach 2, finished.

    >>> async with WorkerPool(url_for(api.url + "/items/{item}"),
    ...                       limiter=RateLimiter(500), workers=32) as pool:
    ...     report = await pool.run(range(1000))
    >>> len(report.results), len(report.failures)
    (1000, 0)

How it is put together (each piece is passed in, and can be swapped):

- a *request builder* turns an item into a ``Request`` (``url_for`` makes one
  from a URL template); a *response unpacker* turns a ``Response`` into the
  result's data (default: the JSON body);
- the *limiter* spaces every attempt (retries too) on the shared schedule;
  the *gate* pauses every worker at once (a 503) and lets one probe through;
- the *error policy* decides, per answer, accept / retry / fail; the *retry
  policy* bounds and jitters the retries of errors;
- a producer feeds a bounded queue (backpressure: a producer never runs more
  than ``queue_size`` items ahead), the workers stop by themselves when the
  items run out (no sentinels for the caller to manage), and a failure or a
  cancellation stops every task and closes the HTTP session.

Every item ends as exactly one ``Result`` or one ``Failure``: a worker keeps
an item until it is resolved, and an item enters the queue once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from course.limiters import Gate, RateLimiter
from course.policies import Attempt, Decision, ErrorPolicy, RetryPolicy, Verdict
from course.records import Failure, Outcome, Request, Response, Result
from course.stats import Hook, RequestEvent, Stats, StatsSnapshot

__all__ = ["RunReport", "WorkerPool", "json_body", "run_stages", "url_for"]

RequestBuilder = Callable[[Any], Request]
Unpacker = Callable[[Any, Response], Any]
Sink = Callable[[Outcome], "Awaitable[None] | None"]


def url_for(template: str) -> RequestBuilder:
    """A request builder: ``url_for("http://h/items/{item}")(7)`` -> GET http://h/items/7."""

    def build(item: Any) -> Request:
        return Request(template.format(item=item))

    build.__qualname__ = f"url_for({template!r})"
    return build


def json_body(item: Any, response: Response) -> Any:
    """The default unpacker: the response's JSON body."""
    return response.json()


@dataclass
class RunReport:
    """What a run produced. With ``on_outcome`` given, results are not kept."""

    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    succeeded: int = 0
    stats: dict[str, StatsSnapshot] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def completed(self) -> int:
        return self.succeeded + self.failed

    @property
    def ok(self) -> bool:
        return not self.failures


class _End:
    """Internal end-of-input marker, one per worker; never seen by callers."""


_END = _End()
_ACCEPTED = Decision.accept()


class WorkerPool:
    """``workers`` coroutines fetching items through one limiter, gate and policy."""

    def __init__(
        self,
        build: RequestBuilder | str,
        *,
        workers: int = 32,
        limiter: RateLimiter | None = None,
        gate: Gate | None = None,
        policy: ErrorPolicy | None = None,
        retry: RetryPolicy | None = None,
        unpack: Unpacker = json_body,
        hooks: Sequence[Hook] = (),
        stats: Stats | None = None,
        queue_size: int | None = None,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        progress: bool = False,
        name: str = "fetch",
    ) -> None:
        if workers < 1:
            raise ValueError(f"a WorkerPool needs at least one worker, got workers={workers}")
        self.build: RequestBuilder = url_for(build) if isinstance(build, str) else build
        self.workers = workers
        self.limiter = limiter
        self.gate = gate if gate is not None else Gate()
        self.policy = policy if policy is not None else ErrorPolicy()
        self.retry = retry if retry is not None else RetryPolicy()
        self.unpack = unpack
        self.hooks = tuple(hooks)
        self.stats = stats if stats is not None else Stats()
        self.queue_size = queue_size if queue_size is not None else 2 * workers
        self.timeout = timeout
        self.session = session
        self.progress = progress
        self.name = name
        self._own_session = False
        self._depth = 0

    # -- session ---------------------------------------------------------------

    async def __aenter__(self) -> WorkerPool:
        if self.session is None:
            self.session = new_session(self.workers, self.timeout)
            self._own_session = True
        self._depth += 1
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._own_session and self.session is not None:
            await self.session.close()
            self.session = None
            self._own_session = False

    # -- public ----------------------------------------------------------------

    async def run(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        on_outcome: Sink | None = None,
    ) -> RunReport:
        """Fetch every item; return a report (results and failures, stats).

        ``on_outcome(outcome)`` (plain or async) receives each Result/Failure
        as it completes; then results are not kept in the report (memory
        stays flat however many items), failures still are.
        """
        async with self:
            return await run_stages([self], items, on_outcome=on_outcome, progress=self.progress)

    async def fetch(
        self,
        item: Any,
        *,
        build: RequestBuilder | None = None,
        unpack: Unpacker | None = None,
        retry: RetryPolicy | None = None,
    ) -> Outcome:
        """Fetch one item through the pool's limiter, gate and policies.

        Use inside ``async with pool:``. ``build``/``unpack`` override the
        pool's own for this call (a listing request goes through the same
        rate limit and error handling as the items do).
        """
        if self.session is None:
            raise RuntimeError("use `async with pool:` (or pool.run) so the pool has a session")
        return await self._process(self.session, item, build, unpack, retry)

    # -- the worker --------------------------------------------------------------

    async def serve(
        self, session: aiohttp.ClientSession, inbox: asyncio.Queue[Any], emit: Sink
    ) -> None:
        """Run the workers on ``inbox`` until each receives the end marker."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.workers):
                group.create_task(self._work(session, inbox, emit))

    async def _work(self, session: aiohttp.ClientSession, inbox: asyncio.Queue[Any], emit: Sink) -> None:
        while True:
            item = await inbox.get()
            if item is _END:
                return
            outcome = await self._process(session, item)
            done = emit(outcome)
            if done is not None:
                await done

    async def _process(
        self,
        session: aiohttp.ClientSession,
        item: Any,
        build: RequestBuilder | None = None,
        unpack: Unpacker | None = None,
        retry: RetryPolicy | None = None,
    ) -> Outcome:
        retry = retry or self.retry
        try:
            request = (build or self.build)(item)
        except Exception as exc:  # a bad item must not stop the pool
            self.stats.record_outcome(False)
            return Failure(item, f"request builder failed: {type(exc).__name__}: {exc}", None, 0, self.name)
        limiter, gate, stats, hooks, policy = self.limiter, self.gate, self.stats, self.hooks, self.policy
        number = errors = throttled = 0
        while True:
            number += 1
            probe = False
            try:
                while True:  # wait for the gate and a slot; re-wait if a pause began meanwhile
                    probe = False if gate.is_open else await gate.enter()
                    if limiter is not None:
                        await limiter.acquire(hold=True)
                    if probe or gate.is_open:
                        break
                    if limiter is not None:
                        limiter.release()
                event = None
                if hooks:
                    event = RequestEvent(item, request.url, number, self.name)
                    for hook in hooks:
                        hook.before_request(event)
                response: Response | None = None
                error: BaseException | None = None
                started = time.perf_counter()
                try:
                    async with session.request(
                        request.method,
                        request.url,
                        params=request.params,
                        json=request.json,
                        headers=request.headers,
                    ) as resp:
                        body = await resp.read()  # read inside the response context
                        response = Response(resp.status, resp.headers, body)
                except Exception as exc:  # the policy decides what an error means
                    error = exc
                finally:
                    if limiter is not None:
                        limiter.release()  # the server has counted it by now, if ever
                duration = time.perf_counter() - started
                status = None if response is None else response.status
                stats.record_request(status, error, duration)
                if event is not None:
                    event.status, event.error, event.duration = status, error, duration
                    for hook in hooks:
                        hook.after_request(event)
                if status is not None and policy.plain_success(status):
                    decision, attempt = _ACCEPTED, None  # the common case, without a handler call
                else:
                    attempt = Attempt(item, request, number, errors, response, error, limiter, gate, retry)
                    decision = await policy.decide(attempt)  # may pause the gate (a 503)
            finally:
                if probe:  # whatever happened, even a cancellation: let the next probe go
                    gate.probe_finished()
            if decision.verdict is Verdict.ACCEPT:
                try:
                    data = None if response is None else (unpack or self.unpack)(item, response)
                except Exception as exc:
                    stats.record_outcome(False)
                    return Failure(item, f"unpacking failed: {type(exc).__name__}: {exc}", status, number, self.name)
                stats.record_outcome(True)
                return Result(item, status if status is not None else 0, data, number, self.name)
            if decision.verdict is Verdict.FAIL:
                stats.record_outcome(False)
                return Failure(item, decision.reason or attempt.describe(), status, number, self.name)
            if decision.counted:
                errors += 1
                if retry.exhausted(errors):
                    stats.record_outcome(False)
                    reason = decision.reason or attempt.describe()
                    return Failure(
                        item, f"gave up after {number} attempts; last error: {reason}", status, number, self.name
                    )
            else:
                throttled += 1
                if throttled > retry.max_throttled:
                    stats.record_outcome(False)
                    reason = decision.reason or attempt.describe()
                    return Failure(
                        item,
                        f"gave up after {throttled} throttled answers (429/503); last: {reason}",
                        status,
                        number,
                        self.name,
                    )
            stats.record_retry()
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)


def new_session(connections: int, timeout: float) -> aiohttp.ClientSession:
    """An aiohttp session sized for ``connections`` concurrent requests."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def _produce(items: Iterable[Any] | AsyncIterable[Any], queue: asyncio.Queue[Any], ends: int) -> None:
    if isinstance(items, AsyncIterable):
        async for item in items:
            await queue.put(item)
    else:
        for item in items:
            await queue.put(item)
    for _ in range(ends):
        await queue.put(_END)


async def run_stages(
    stages: Sequence[WorkerPool],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    on_outcome: Sink | None = None,
    progress: bool = False,
) -> RunReport:
    """Run ``stages`` joined by bounded queues; each stage's unpacker feeds the next.

    The unpacker of every stage but the last returns an iterable of items for
    the next stage (one response -> many items). Failures of any stage, and
    results of the last, are the run's outcomes. Each stage needs an open
    ``session`` (``async with`` it, or use ``WorkerPool.run`` / ``Pipeline.run``).
    """
    if not stages:
        raise ValueError("run_stages needs at least one stage")
    report = RunReport()
    total = len(items) if isinstance(items, Sized) and len(stages) == 1 else None
    bar = _progress_bar(total, progress, stages[-1].name)

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
        if stage.session is None:
            raise RuntimeError(f"stage {stage.name!r} has no open session: use `async with` or .run()")
        emit = finish if index == len(stages) - 1 else forward_to(index)
        await stage.serve(stage.session, queues[index], emit)
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


def _progress_bar(total: int | None, enabled: bool, name: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # notebook-aware: a widget in Jupyter, text on stderr elsewhere

    return tqdm(total=total, desc=name, unit="item", mininterval=0.5)
