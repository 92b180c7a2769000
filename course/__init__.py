"""The course package: what the notebooks import.

Each lesson's idea lives in one module whose name says it:

- ``course.servers``  start/reuse/stop the bundled servers from a notebook or test
- ``course.checks``   exercises with ``check()``, ``hint()`` and ``solution()``
- ``course.show``     display the package's own source in a notebook

The async client framework (lesson B), one idea per module:

- ``course.limiters`` ``RateLimiter`` (even, absolute schedule) and ``Gate`` (pause everyone)
- ``course.queues``   ``ThrottledQueue``: the lesson's throttled queue, written correctly
- ``course.records``  ``Request``, ``Response``, ``Result``, ``Failure``
- ``course.policies`` ``ErrorPolicy`` (429/503/5xx/errors -> decisions), ``RetryPolicy``
- ``course.client``   ``fetch_each``: one coroutine per request, throttler + tenacity
- ``course.workers``  ``WorkerPool``: N workers on a bounded queue, ``url_for``
- ``course.listing``  ``list_items``: the producer, following pages
- ``course.pipeline`` ``Pipeline``: stages joined by queues, ``list_then_fetch``
- ``course.stats``    ``Stats`` / ``StatsSnapshot``, request hooks (``LogHook``)
- ``course.compare``  the same workload through five clients, as a table
- ``course.fetch``    the command line: ``python -m course.fetch BASE_URL --rate R``
- ``course.bench``    the benchmark: ``python -m course.bench``
"""

__version__ = "0.1.0"

# The framework's public names, imported on first use: ``import course.servers``
# stays quick (no aiohttp import) for code that only starts servers.
_EXPORTS = {
    "Decision": "course.policies",
    "ErrorPolicy": "course.policies",
    "Failure": "course.records",
    "Gate": "course.limiters",
    "LogHook": "course.stats",
    "Pipeline": "course.pipeline",
    "RateLimiter": "course.limiters",
    "Request": "course.records",
    "Response": "course.records",
    "Result": "course.records",
    "RetryPolicy": "course.policies",
    "RunReport": "course.workers",
    "Stats": "course.stats",
    "StatsSnapshot": "course.stats",
    "WorkerPool": "course.workers",
    "url_for": "course.workers",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'course' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Decision",
    "ErrorPolicy",
    "Failure",
    "Gate",
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
    "WorkerPool",
    "url_for",
]
