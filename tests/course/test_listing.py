"""The listing producer against scripted servers: pages that loop, pages on another origin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from course.listing import ListingError, list_items
from course.policies import RetryPolicy
from course.workers import WorkerPool

PAGES_BEFORE_GIVING_UP = 50  # a looping server ends its loop here, so old code finishes (with duplicates)


def paging_server(next_link: Callable[[web.Request, int], str | None]) -> tuple[web.Application, list[str]]:
    """A server whose page N lists item N and links to ``next_link(request, N)``; records the pages asked for."""
    asked: list[str] = []

    async def page(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        number = int(request.query.get("page", "1"))
        following = next_link(request, number) if len(asked) < PAGES_BEFORE_GIVING_UP else None
        return web.json_response({"items": [len(asked)], "next": following})

    app = web.Application()
    app.router.add_get("/items", page)
    return app, asked


async def listed(base_url: str) -> list[Any]:
    async with WorkerPool(base_url + "/items/{item}", workers=1, retry=RetryPolicy(retries=0)) as pool:
        return [item async for item in list_items(pool, base_url)]


async def test_absolute_and_relative_next_links_on_the_same_origin_are_followed(serve) -> None:
    base = ""

    def link(request: web.Request, number: int) -> str | None:
        if number == 3:
            return None
        return f"{base}/items?page={number + 1}" if number == 1 else f"/items?page={number + 1}"

    app, asked = paging_server(link)
    base = await serve(app)
    assert await listed(base) == [1, 2, 3]
    assert asked == ["/items?page=1&per_page=1000", "/items?page=2", "/items?page=3"]


@pytest.mark.parametrize(
    "link",
    [
        lambda request, number: request.path_qs,  # the page itself
        lambda request, number: "/items?per_page=1000&page=1",  # the first page, its query reordered
        lambda request, number: f"/items?page={2 if number == 1 else 1}&per_page=1000",  # two pages, in turn
    ],
    ids=["itself", "reordered", "back-and-forth"],
)
async def test_a_next_link_to_a_page_listed_already_stops_the_listing(serve, link) -> None:
    # Finding 10: a `next` pointing at its own page looped for ever (977 lines for one id in 10 s).
    app, asked = paging_server(link)
    base = await serve(app)
    with pytest.raises(ListingError, match="a page listed already: the pages loop"):
        await asyncio.wait_for(listed(base), 60)
    assert len(asked) <= 2


@pytest.mark.parametrize("other", ["port", "scheme"])
async def test_a_next_link_to_another_origin_is_not_followed(serve, other: str) -> None:
    # Finding 10: a `next` on another host was followed.
    elsewhere: list[str] = []

    async def record(request: web.Request) -> web.Response:
        elsewhere.append(request.path_qs)
        return web.json_response({"items": ["from elsewhere"], "next": None})

    foreign = web.Application()
    foreign.router.add_get("/items", record)
    foreign_url = await serve(foreign)
    base = ""

    def link(request: web.Request, number: int) -> str:
        if other == "port":
            return f"{foreign_url}/items?page=2"
        return base.replace("http://", "https://") + "/items?page=2"

    app, asked = paging_server(link)
    base = await serve(app)
    with pytest.raises(ListingError, match="outside"):
        await listed(base)
    assert elsewhere == [] and asked == ["/items?page=1&per_page=1000"]


async def test_a_next_that_is_not_a_link_is_a_listing_error(serve) -> None:
    app, _ = paging_server(lambda request, number: 2)  # a number, not a URL
    base = await serve(app)
    with pytest.raises(ListingError, match="not a link"):
        await listed(base)
