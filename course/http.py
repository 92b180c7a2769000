"""Sending one request: the client session, and reading an answer with a size limit.

Both clients send through ``send_request``: the worker pool
(``course.workers``) and one coroutine per request (``course.client``).

    >>> async with new_session(connections=32, timeout=30.0) as session:
    ...     response = await send_request(session, Request(api.url + "/items/7"))
    >>> response.status, "@" in response.json()["email"]
    (200, True)

The body is read inside the ``async with session.request(...)`` block,
while the connection is still ours, and never past ``max_body`` bytes
(10 MiB by default): a server that answers with more -- by mistake, or a
hostile one -- cannot fill the client's memory. A ``Content-Length`` over
the limit is refused before a byte is read; a body without one (chunked,
or compressed) is read until it passes the limit. Either way
``ResponseTooLarge`` is raised, an error no policy retries: the same
request would get the same answer.

Most answers are small and have arrived whole by the time their headers
are read; those are taken from the stream at once, which costs less CPU
than ``ClientResponse.read()``. (A large body cannot arrive whole unread:
aiohttp stops taking data from the socket while some 128 KiB wait unread,
and decompresses only as the body is read.)
"""

from __future__ import annotations

import aiohttp
from aiohttp import hdrs

from course.records import Request, Response

__all__ = ["DEFAULT_MAX_BODY", "ResponseTooLarge", "new_session", "send_request"]

DEFAULT_MAX_BODY = 10 * 2**20
"""The largest body ``send_request`` reads by default, in bytes (10 MiB)."""


class ResponseTooLarge(Exception):
    """An answer's body is larger than ``max_body`` bytes, so it was not read."""

    def __init__(self, request: Request, status: int, max_body: int) -> None:
        self.request = request
        self.status = status
        self.max_body = max_body
        super().__init__(
            f"the answer to {request.method} {request.url} (HTTP {status}) is larger than "
            f"max_body={max_body} bytes, so it was not read; if such answers are expected, "
            f"pass a larger max_body= (or max_body=None for no limit)"
        )


def new_session(connections: int, timeout: float) -> aiohttp.ClientSession:
    """An aiohttp session sized for ``connections`` concurrent requests of at most ``timeout`` s each."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def send_request(
    session: aiohttp.ClientSession, request: Request, *, max_body: int | None = DEFAULT_MAX_BODY
) -> Response:
    """Send ``request``; return its answer, the body read (at most ``max_body`` bytes; None: no limit).

    Raises ``ResponseTooLarge`` for a larger body, and aiohttp's errors
    (``aiohttp.ClientError``, ``TimeoutError``) as they come.
    """
    async with session.request(
        request.method, request.url, params=request.params, json=request.json, headers=request.headers
    ) as resp:
        if resp.content.is_eof():  # the whole body is here already (most small answers): take it, no waiting
            body = resp.content.read_nowait()
            if max_body is not None and len(body) > max_body:
                raise ResponseTooLarge(request, resp.status, max_body)
        elif max_body is None:
            body = await resp.read()
        else:
            body = await _read_at_most(resp, max_body, request)
        return Response(resp.status, resp.headers, body)


async def _read_at_most(resp: aiohttp.ClientResponse, max_body: int, request: Request) -> bytes:
    """The body as it arrives, refused with ``ResponseTooLarge`` as soon as it is known to pass ``max_body``."""
    declared = resp.content_length  # the bytes on the wire: a compressed body grows when decoded
    if declared is not None and declared > max_body and hdrs.CONTENT_ENCODING not in resp.headers:
        raise ResponseTooLarge(request, resp.status, max_body)  # said so up front: not a byte is read
    chunks: list[bytes] = []
    room = max_body + 1  # one byte more than allowed tells "too large" from "exactly the limit"
    while room > 0:
        chunk = await resp.content.read(room)  # what has arrived, up to `room` bytes; b"" at the end
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        room -= len(chunk)
    raise ResponseTooLarge(request, resp.status, max_body)
