"""Retry-After as an HTTP-date, over real sockets: the worker pool's gate and course.notify both honour it."""

from __future__ import annotations

import asyncio
import math
import time
from email.utils import formatdate

from aiohttp import web
from aiohttp.test_utils import TestServer

from course import notify
from course.limiters import RateLimiter
from course.notify import Backoff, Counters, Notification
from course.workers import WorkerPool

WAIT = 60.0  # generous: the machine is shared


def down_until(seconds_from_now: int) -> tuple[float, str, list[int]]:
    """(the moment, as an epoch time, a whole second ``seconds_from_now`` ahead; its HTTP-date; a status log).

    A whole second: an HTTP-date has no fraction, so the date names the moment exactly.
    """
    back = math.ceil(time.time()) + seconds_from_now
    return back, formatdate(back, usegmt=True), []


async def test_the_pool_waits_for_an_http_date_instead_of_probing_every_second() -> None:
    # Finding 9: an HTTP-date fell back to 1 s, so the client came back early again and again.
    back, date, statuses = down_until(3)

    async def item(request: web.Request) -> web.Response:
        if time.time() < back:
            statuses.append(503)
            return web.json_response({"error": "down"}, status=503, headers={"Retry-After": date})
        statuses.append(200)
        return web.json_response({"id": request.match_info["id"]})

    app = web.Application()
    app.router.add_get("/items/{id}", item)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("")).rstrip("/")
        pool = WorkerPool(base + "/items/{item}", workers=1, limiter=RateLimiter(100))
        report = await asyncio.wait_for(pool.run(["a", "b", "c"]), WAIT)
    assert report.succeeded == 3
    # One 503, then a probe at the date (two if a clock is a hair early); waiting 1 s at a time makes 3 or more.
    assert statuses.count(503) <= 2 and statuses.count(200) == 3


async def test_notify_waits_for_an_http_date_instead_of_its_short_backoff() -> None:
    back, date, statuses = down_until(2)

    async def wait(request: web.Request) -> web.Response:
        if time.time() < back:
            statuses.append(503)
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": date})
        statuses.append(200)
        return web.json_response([{"id": 1, "name": "n", "data": 1, "timestamp": 2.0}])

    app = web.Application()
    app.router.add_get("/notifications/wait", wait)
    got: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
    async with TestServer(app, host="127.0.0.1") as server, notify.client_session() as session:
        task = asyncio.create_task(
            notify.long_poll(
                session,
                str(server.make_url("")).rstrip("/"),
                lambda note: got.done() or got.set_result(note),
                counters=Counters(),
                backoff=Backoff(first=0.01),
            )
        )
        try:
            note = await asyncio.wait_for(got, WAIT)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert note.id == 1
    # The date is honoured: one 503 (two at most). The 0.01 s back-off alone would make about eight.
    assert statuses.count(503) <= 2
