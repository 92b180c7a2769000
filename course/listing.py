"""The producer's side: list the items an API offers, page by page if it paginates.

``list_items(pool, base_url)`` asks for ``/items?page=1&per_page=K``. A
paginating API answers ``{"items": [...], "next": "/items?page=2..."}`` and
the pages are followed until ``next`` is null; an API that ignores the
query answers the whole JSON list at once. Every page request goes through
the pool's limiter, gate and error policies, like any other request.

A ``next`` link is followed only to a page not listed yet on the base URL's
own origin (scheme, host and port): a link back to an earlier page would
loop forever, and one to another host would send our requests elsewhere.
Either stops the listing with a ``ListingError``.

    >>> async with pool:
    ...     report = await pool.run(list_items(pool, api.url))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

from course.policies import RetryPolicy
from course.records import Failure, Request, Response
from course.workers import WorkerPool

__all__ = ["ListingError", "list_items"]


class ListingError(RuntimeError):
    """The list of items could not be fetched, so nothing can be fetched."""


PageKey = tuple[str, tuple[tuple[str, str], ...]]  # a page's path and its sorted query


def _json(url: str, response: Response) -> Any:
    return response.json()


async def list_items(
    pool: WorkerPool, base_url: str, *, per_page: int = 1000, retry: RetryPolicy | None = None
) -> AsyncIterator[Any]:
    """Yield every id listed at ``base_url/items``, following pages.

    A page is worth more retries than an item (without it nothing can be
    fetched): ``retry`` defaults to the pool's policy with at least 8 retries.
    """
    if retry is None:
        retry = replace(pool.retry, retries=max(8, pool.retry.retries))
    base = base_url.rstrip("/") + "/"
    url: str | None = urljoin(base, f"items?page=1&per_page={per_page}")
    listed: set[PageKey] = set()
    while url is not None:
        listed.add(_page_key(url))
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
        url = _next_page(base, url, page.get("next"), listed)


def _next_page(base: str, url: str, link: Any, listed: set[PageKey]) -> str | None:
    """The next page's URL (None after the last page), if it is safe to follow."""
    if not link:
        return None
    if not isinstance(link, str):
        raise ListingError(f"{url} gave a 'next' that is not a link: {str(link)[:200]}")
    following = urljoin(url, link)
    if _origin(following) != _origin(base):
        raise ListingError(
            f"{url} links its next page to {following}, outside {base}: not followed, the listing stops. "
            f"An API's pages should stay on its own scheme, host and port."
        )
    if _page_key(following) in listed:
        raise ListingError(
            f"{url} links its next page back to {following}, a page listed already: "
            f"the pages loop, so the listing stops. Check the API's pagination."
        )
    return following


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ListingError(f"{url} has an invalid port") from None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), port or {"http": 80, "https": 443}.get(scheme)


def _page_key(url: str) -> PageKey:
    """A page's identity: its path and its query parameters in any order."""
    parts = urlsplit(url)
    return parts.path, tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
