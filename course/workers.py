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
- ``course.http.send_request`` sends each attempt and reads at most
  ``max_body`` bytes of its answer.

``run`` hands the items to ``course.pipeline.run_stages`` with this pool as
the only stage: a producer feeds a bounded queue (backpressure: it never
runs more than ``queue_size`` items ahead), the workers stop by themselves
when the items run out (no sentinels for the caller to manage), and a
failure or a cancellation stops every task and closes the HTTP session.

Every item ends as exactly one ``Result`` or one ``Failure``: a worker keeps
an item until it is resolved, and an item enters the queue once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from course.http import DEFAULT_MAX_BODY, new_session, send_request
from course.limiters import Gate, RateLimiter
from course.policies import Attempt, Decision, ErrorPolicy, RetryPolicy, Verdict
from course.records import Failure, Outcome, Request, Response, Result, RunReport
from course.stats import Hook, RequestEvent, Stats

__all__ = ["RunReport", "WorkerPool", "json_body", "url_for"]

RequestBuilder = Callable[[Any], Request]
Unpacker = Callable[[Any, Response], Any]
Sink = Callable[[Outcome], "Awaitable[None] | None"]

_NOT_A_SEGMENT = frozenset({"", ".", ".."})  # a URL resolves these to another path, escaped or not


def url_for(template: str) -> RequestBuilder:
    """A request builder: ``url_for("http://h/items/{item}")(7)`` -> GET http://h/items/7.

    The item fills in *one* path segment, percent-escaped: ``"a/b"`` asks for
    ``/items/a%2Fb`` and ``"../_reset"`` for ``/items/..%2F_reset``, never for
    another path. An empty item, ``"."`` or ``".."`` would name another path
    however it is escaped, so building its request fails (``ValueError``;
    the pool reports that item as a ``Failure``).
    """

    def build(item: Any) -> Request:
        if type(item) is int:  # digits and "-": nothing to escape (the common case, kept cheap)
            return Request(template.format(item=item))
        segment = quote(str(item), safe="")
        if segment in _NOT_A_SEGMENT:
            raise ValueError(f"the item {item!r} cannot be a path segment: the URL would name another path")
        return Request(template.format(item=segment))

    build.__qualname__ = f"url_for({template!r})"
    return build


def json_body(item: Any, response: Response) -> Any:
    """The default unpacker: the response's JSON body."""
    return response.json()


class _End:
    """The end-of-input marker: one per worker, after the last item; never seen by callers."""


_END = _End()


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
        max_body: int | None = DEFAULT_MAX_BODY,
        session: aiohttp.ClientSession | None = None,
        progress: bool = False,
        name: str = "fetch",
    ) -> None:
        if workers < 1:
            raise ValueError(f"a WorkerPool needs at least one worker, got workers={workers}")
        if max_body is not None and max_body < 0:
            raise ValueError(f"max_body is a number of bytes >= 0 (or None for no limit), got {max_body}")
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
        self.max_body = max_body
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
        from course.pipeline import run_stages  # the stage runner is built on this class

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

    # -- the workers -------------------------------------------------------------

    async def serve(
        self, session: aiohttp.ClientSession, inbox: asyncio.Queue[Any], emit: Sink
    ) -> None:
        """Run the workers on ``inbox``, sending through ``session``, until each receives the end marker."""
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

    # -- one item, until it is resolved ---------------------------------------------

    async def _process(
        self,
        session: aiohttp.ClientSession,
        item: Any,
        build: RequestBuilder | None = None,
        unpack: Unpacker | None = None,
        retry: RetryPolicy | None = None,
    ) -> Outcome:
        """Send ``item``'s request until the policies accept or fail it: the item's one outcome."""
        retry = retry or self.retry
        try:
            request = (build or self.build)(item)
        except Exception as exc:  # a bad item must not stop the pool
            return self._failure(item, f"request builder failed: {type(exc).__name__}: {exc}", None, 0)
        number = errors = throttled = 0
        while True:
            number += 1
            probe = await self._wait_for_gate_and_slot()
            try:
                response, error = await self._send(session, item, request, number)
                if response is not None and self.policy.plain_success(response.status):
                    return self._result(item, response, number, unpack)  # the common case: no handler call
                attempt = Attempt(item, request, number, errors, response, error, self.limiter, self.gate, retry)
                decision = await self.policy.decide(attempt)  # may pause the gate (a 503)
            finally:
                if probe:  # whatever happened, even a cancellation: let the next probe go
                    self.gate.probe_finished()
            if decision.verdict is not Verdict.RETRY:
                return self._conclude(attempt, decision, unpack)
            if decision.counted:
                errors += 1
            else:
                throttled += 1
            if retry.exhausted(errors) or throttled > retry.max_throttled:
                return self._give_up(attempt, decision, throttled)
            self.stats.record_retry()
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)

    async def _wait_for_gate_and_slot(self) -> bool:
        """Wait until the gate is open (or this worker is its probe) and the limiter gives a slot.

        The slot is held (``release()`` once the answer is in). Returns True
        for the gate's probe, who must call ``gate.probe_finished()``.
        """
        gate, limiter = self.gate, self.limiter
        while True:
            probe = False if gate.is_open else await gate.enter()
            if limiter is not None:
                try:
                    await limiter.acquire(hold=True)
                except BaseException:  # cancelled while waiting: let the next probe go
                    if probe:
                        gate.probe_finished()
                    raise
            if probe or gate.is_open:
                return probe
            if limiter is not None:  # a pause began while this worker waited for its slot
                limiter.release()

    async def _send(
        self, session: aiohttp.ClientSession, item: Any, request: Request, number: int
    ) -> tuple[Response | None, BaseException | None]:
        """Send attempt ``number`` in the slot already held, then free the slot; count it, tell the hooks.

        Returns the answer, or the error that came instead (the error policy
        decides what an error means).
        """
        event = None
        if self.hooks:
            event = RequestEvent(item, request.url, number, self.name)
            for hook in self.hooks:
                hook.before_request(event)
        response: Response | None = None
        error: BaseException | None = None
        started = time.perf_counter()
        try:
            response = await send_request(session, request, max_body=self.max_body)
        except Exception as exc:
            error = exc
        finally:
            if self.limiter is not None:
                self.limiter.release()  # the server has counted it by now, if ever
        duration = time.perf_counter() - started
        status = None if response is None else response.status
        self.stats.record_request(status, error, duration)
        if event is not None:
            event.status, event.error, event.duration = status, error, duration
            for hook in self.hooks:
                hook.after_request(event)
        return response, error

    def _result(self, item: Any, response: Response | None, number: int, unpack: Unpacker | None) -> Outcome:
        """An accepted answer, unpacked (an unpacker's error fails the item, not the pool)."""
        if response is None:  # a custom error handler accepted an error: a result without data
            self.stats.record_outcome(True)
            return Result(item, 0, None, number, self.name)
        try:
            data = (unpack or self.unpack)(item, response)
        except Exception as exc:
            return self._failure(item, f"unpacking failed: {type(exc).__name__}: {exc}", response.status, number)
        self.stats.record_outcome(True)
        return Result(item, response.status, data, number, self.name)

    def _conclude(self, attempt: Attempt, decision: Decision, unpack: Unpacker | None) -> Outcome:
        """A handler's final word on ``attempt``: accept it, or fail the item."""
        if decision.verdict is Verdict.ACCEPT:
            return self._result(attempt.item, attempt.response, attempt.number, unpack)
        return self._failure(attempt.item, decision.reason or attempt.describe(), attempt.status, attempt.number)

    def _give_up(self, attempt: Attempt, decision: Decision, throttled: int) -> Failure:
        """The item's retry budget is spent: fail it with the last answer or error."""
        reason = decision.reason or attempt.describe()
        if decision.counted:
            reason = f"gave up after {attempt.number} attempts; last error: {reason}"
        else:
            reason = f"gave up after {throttled} throttled answers (429/503); last: {reason}"
        return self._failure(attempt.item, reason, attempt.status, attempt.number)

    def _failure(self, item: Any, reason: str, status: int | None, number: int) -> Failure:
        self.stats.record_outcome(False)
        return Failure(item, reason, status, number, self.name)
