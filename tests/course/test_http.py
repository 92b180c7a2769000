"""send_request against real aiohttp servers: a body over max_body is refused, not read into memory."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from course.http import ResponseTooLarge, new_session, send_request
from course.records import Request

LIMIT = 2**20  # 1 MiB
STREAMED = 64 * 2**20  # far more than the kernel's socket buffers can hold


async def sized(request: web.Request) -> web.Response:
    """``/sized/N``: N bytes with a Content-Length."""
    return web.Response(body=b"x" * int(request.match_info["n"]))


class Streamer:
    """``/stream``: 64 MiB, chunked (no Content-Length); remembers whether it got to the end."""

    def __init__(self) -> None:
        self.finished = False
        self.over = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"y" * 2**16
        try:
            for _ in range(STREAMED // len(chunk)):
                await response.write(chunk)
            await response.write_eof()
            self.finished = True
        finally:
            self.over.set()
        return response


async def compressed(request: web.Request) -> web.Response:
    """``/gzip``: 8 MiB of zeros, gzip-compressed to a few kilobytes on the wire."""
    return web.Response(body=gzip.compress(bytes(8 * 2**20)), headers={"Content-Encoding": "gzip"})


async def head_of_big(request: web.Request) -> web.Response:
    """HEAD ``/big``: a Content-Length of 50 MiB, and (as for any HEAD) no body."""
    return web.Response(headers={"Content-Length": str(50 * 2**20)})


@pytest.fixture
def streamer() -> Streamer:
    return Streamer()


@pytest.fixture
async def server(streamer: Streamer):
    app = web.Application()
    app.router.add_get("/sized/{n}", sized)
    app.router.add_get("/stream", streamer.handle)
    app.router.add_get("/gzip", compressed)
    app.router.add_route("HEAD", "/big", head_of_big)
    async with TestServer(app, host="127.0.0.1") as running:
        yield running


async def test_a_body_of_exactly_max_body_is_read_and_one_byte_more_is_refused(server) -> None:
    async with new_session(4, 30.0) as session:
        response = await send_request(session, Request(str(server.make_url(f"/sized/{LIMIT}"))), max_body=LIMIT)
        assert response.status == 200 and len(response.body) == LIMIT
        with pytest.raises(ResponseTooLarge, match=f"larger than max_body={LIMIT} bytes") as refused:
            await send_request(session, Request(str(server.make_url(f"/sized/{LIMIT + 1}"))), max_body=LIMIT)
        assert refused.value.status == 200 and refused.value.max_body == LIMIT
        # None: no limit at all
        unlimited = await send_request(session, Request(str(server.make_url(f"/sized/{LIMIT + 1}"))), max_body=None)
        assert len(unlimited.body) == LIMIT + 1


async def test_a_small_answer_that_arrived_whole_is_held_to_the_limit_too(server) -> None:
    async with new_session(4, 30.0) as session:
        assert len((await send_request(session, Request(str(server.make_url("/sized/100"))), max_body=100)).body) == 100
        with pytest.raises(ResponseTooLarge, match="max_body=99 bytes"):
            await send_request(session, Request(str(server.make_url("/sized/100"))), max_body=99)


async def test_a_streamed_body_is_not_read_past_the_limit(server, streamer: Streamer) -> None:
    async with new_session(4, 30.0) as session:
        with pytest.raises(ResponseTooLarge, match="pass a larger max_body="):
            await send_request(session, Request(str(server.make_url("/stream"))), max_body=LIMIT)
    # The client stopped reading and dropped the connection: the server could
    # not write its 64 MiB (a client that read it all would let it finish).
    await asyncio.wait_for(streamer.over.wait(), timeout=30)
    assert not streamer.finished


async def test_the_limit_applies_to_the_decoded_body_of_a_compressed_answer(server) -> None:
    async with new_session(4, 30.0) as session:
        with pytest.raises(ResponseTooLarge):
            await send_request(session, Request(str(server.make_url("/gzip"))), max_body=LIMIT)
        whole = await send_request(session, Request(str(server.make_url("/gzip"))), max_body=16 * 2**20)
    assert whole.body == bytes(8 * 2**20)


async def test_a_head_answer_has_no_body_whatever_its_content_length(server) -> None:
    async with new_session(4, 30.0) as session:
        response = await send_request(session, Request(str(server.make_url("/big")), method="HEAD"), max_body=LIMIT)
    assert response.status == 200 and response.body == b""
