"""Sending one request: the client session, and reading its answer.

Both clients send through ``send_request``: the worker pool
(``course.workers``) and one coroutine per request (``course.client``).

    >>> async with new_session(connections=32, timeout=30.0) as session:
    ...     response = await send_request(session, Request(api.url + "/items/7"))
    >>> response.status, "@" in response.json()["email"]
    (200, True)

The body is read inside the ``async with session.request(...)`` block,
while the connection is still ours.
"""

from __future__ import annotations

import aiohttp

from course.records import Request, Response

__all__ = ["new_session", "send_request"]


def new_session(connections: int, timeout: float) -> aiohttp.ClientSession:
    """An aiohttp session sized for ``connections`` concurrent requests of at most ``timeout`` s each."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def send_request(session: aiohttp.ClientSession, request: Request) -> Response:
    """Send ``request``; return its answer, the body read.

    Raises aiohttp's errors (``aiohttp.ClientError``, ``TimeoutError``) as they come.
    """
    async with session.request(
        request.method, request.url, params=request.params, json=request.json, headers=request.headers
    ) as resp:
        return Response(resp.status, resp.headers, await resp.read())
