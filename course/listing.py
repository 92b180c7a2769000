"""The producer's side: list the items an API offers, page by page if it paginates.

``list_items(pool, base_url)`` asks for ``/items?page=1&per_page=K``. A
paginating API answers ``{"items": [...], "next": "/items?page=2..."}`` and
the pages are followed until ``next`` is null; an API that ignores the
query answers the whole JSON list at once. Every page request goes through
the pool's limiter, gate and error policies, like any other request.

    >>> async with pool:
    ...     report = await pool.run(list_items(pool, api.url))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin

from course.policies import RetryPolicy
from course.records import Failure, Request, Response
from course.workers import WorkerPool

__all__ = ["ListingError", "list_items"]


class ListingError(RuntimeError):
    """The list of items could not be fetched, so nothing can be fetched."""


def _json(url: str, response: Response) -> Any:
    return response.json()


async def list_items(
    pool: WorkerPool, base_url: str, *, per_page: int = 1000, retry: RetryPolicy | None = None
) -> AsyncIterator[Any]:
    """Yield every id listed at ``base_url/items``, following pages.

    A page is worth more retries than an item (without it nothing can be
    fetched): ``retry`` defaults to 8 retries, or the pool's own if larger.
    """
    if retry is None:
        retry = RetryPolicy(retries=max(8, pool.retry.retries), cap=pool.retry.cap)
    base = base_url.rstrip("/") + "/"
    url: str | None = urljoin(base, f"items?page=1&per_page={per_page}")
    while url is not None:
        outcome = await pool.fetch(url, build=Request, unpack=_json, retry=retry)
        if isinstance(outcome, Failure):
            raise ListingError(
                f"Could not list the items at {url}: {outcome.error}. "
                f"Check that the base URL points at the API (GET {base}items should answer)."
            )
        page = outcome.data
        if isinstance(page, list):  # not paginated: everything at once
            for item in page:
                yield item
            return
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise ListingError(
                f"{url} answered neither a JSON list nor a page {{'items': [...], 'next': ...}}: {str(page)[:200]}"
            )
        for item in page["items"]:
            yield item
        following = page.get("next")
        url = urljoin(url, following) if following else None
