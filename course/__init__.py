"""The course package: what the notebooks import.

Each lesson's idea lives in one module whose name says it:

- ``course.servers``  start/reuse/stop the bundled servers from a notebook or test
- ``course.mockapi_control`` the mock API's control routes (scenario, reset, stats)
- ``course.checks``   exercises with ``check()``, ``hint()`` and ``solution()``
- ``course.exercises`` one module of exercises per lesson; ``all_exercises()``
- ``course.show``     display the package's own source in a notebook
- ``course.coursemap`` the one-picture map of the course (lesson 00)
- ``course.browser``  Debian's Chromium and its headless flags (Playwright)

Lesson A (the Flask messaging app in ``server.messaging``):

- ``course.notify``   poll / long-poll / SSE / WebSocket clients delivering one
  ``Notification`` to one callback; ``login`` and ``send_message`` through the forms
- ``course.delivery`` one measurement of delivery delays (lessons 03 and 09)
- ``course.lesson01_app``, ``course.lesson03_delivery``, ``course.lesson09_load``
  the lessons' own helpers

The async client framework (lesson B), one idea per module:

- ``course.limiters`` ``RateLimiter`` (even, absolute schedule) and ``Gate`` (pause everyone)
- ``course.queues``   ``ThrottledQueue``: the lesson's throttled queue, written correctly
- ``course.records``  ``Request``, ``Response``, ``Result``, ``Failure``, ``RunReport``
- ``course.http``     ``send_request`` (one request, a bounded body) and ``new_session``
- ``course.policies`` ``ErrorPolicy`` (429/503/5xx/errors -> decisions), ``RetryPolicy``,
  ``parse_retry_after`` (seconds and HTTP-dates, capped)
- ``course.client``   ``fetch_each``: one coroutine per request, throttler + tenacity
- ``course.workers``  ``WorkerPool``: N workers on a bounded queue, ``url_for``
- ``course.listing``  ``list_items``: the producer, following pages
- ``course.pipeline`` ``Pipeline`` and ``run_stages``: stages joined by queues
- ``course.stats``    ``Stats`` / ``StatsSnapshot``, request hooks (``LogHook``)
- ``course.progress`` the progress bar of a run
- ``course.timeline`` what the mock API saw, second by second (lessons 06 and 07)
- ``course.compare``  the same workload through five clients, as a table
- ``course.fetch``    the command line: ``python -m course.fetch BASE_URL --rate R``

Beyond one process (lesson 11; lesson 10's push gateway is ``server.push``):

- ``course.lesson10_push`` lesson 10's stack: PostgreSQL, the app under gunicorn, the
  push gateway, and fleets of SSE/WebSocket streams
- ``course.redis_server`` a throwaway Redis for tests and notebooks
- ``course.postgres_server`` a throwaway PostgreSQL for tests, benchmarks and lesson 10
- ``course.shared_limit`` ``SharedRateLimiter``: one budget for many processes (GCRA in Redis)
- ``course.work_queue``   ``WorkQueue``: Redis Streams consumer groups, results stored once
- ``course.aimd``         ``AimdLimiter``: find an unknown limit, or read ``RateLimit`` headers

Benchmarks drive the servers from the outside: ``course.benchmarks`` (``make bench``).
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

# The framework's public names. At run time they are imported on first use,
# so ``import course.servers`` stays quick (no aiohttp) for code that only
# starts servers; type checkers and editors read the imports below instead.
if TYPE_CHECKING:
    from course.client import fetch_each
    from course.limiters import Gate, RateLimiter
    from course.listing import ListingError, list_items
    from course.pipeline import Pipeline, list_then_fetch
    from course.policies import Attempt, Decision, ErrorPolicy, RetryPolicy, Verdict, retry_after
    from course.queues import ThrottledQueue
    from course.records import Failure, Request, Response, Result, RunReport
    from course.stats import LogHook, Stats, StatsSnapshot
    from course.workers import WorkerPool, url_for

_EXPORTS = {
    "Attempt": "course.policies",
    "Decision": "course.policies",
    "ErrorPolicy": "course.policies",
    "Failure": "course.records",
    "Gate": "course.limiters",
    "ListingError": "course.listing",
    "LogHook": "course.stats",
    "Pipeline": "course.pipeline",
    "RateLimiter": "course.limiters",
    "Request": "course.records",
    "Response": "course.records",
    "Result": "course.records",
    "RetryPolicy": "course.policies",
    "RunReport": "course.records",
    "Stats": "course.stats",
    "StatsSnapshot": "course.stats",
    "ThrottledQueue": "course.queues",
    "Verdict": "course.policies",
    "WorkerPool": "course.workers",
    "fetch_each": "course.client",
    "list_items": "course.listing",
    "list_then_fetch": "course.pipeline",
    "retry_after": "course.policies",
    "url_for": "course.workers",
}

__all__ = [
    "Attempt",
    "Decision",
    "ErrorPolicy",
    "Failure",
    "Gate",
    "ListingError",
    "LogHook",
    "Pipeline",
    "RateLimiter",
    "Request",
    "Response",
    "Result",
    "RetryPolicy",
    "RunReport",
    "Stats",
    "StatsSnapshot",
    "ThrottledQueue",
    "Verdict",
    "WorkerPool",
    "fetch_each",
    "list_items",
    "list_then_fetch",
    "retry_after",
    "url_for",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'course' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
