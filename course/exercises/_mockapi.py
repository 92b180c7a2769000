"""The checkers' mock API for lessons 04 and 05, started from a thread that lasts.

On Linux a server started by ``course.servers`` dies with the *thread* that
started it (``PR_SET_PDEATHSIG`` follows the thread, not the process), and
``check()`` runs every checker in a short-lived worker thread: a server that
``checker_mock_api`` started there would be gone by the next check. So every
call goes through one long-lived worker thread, which starts (or restarts)
the server when needed and installs the scenario.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from course.checks import checker_mock_api

__all__ = ["checker_api"]

#: One idle-forever thread: an executor's worker lives until the executor shuts down (at exit).
_KEEPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checker-mock-api")


def checker_api(scenario: dict[str, Any] | None = None, *, items: int = 1000) -> str:
    """``checker_mock_api(scenario, items=items)``, called from the lasting thread; its base URL."""
    return _KEEPER.submit(checker_mock_api, scenario, items=items).result()
