"""Exercises of lesson 03 (push or poll?): the cost model of the three transports
(``expected_requests``), an SSE frame (``format_event``, read back by the course's
own SSE parser) and an SSE client that resumes with ``Last-Event-ID``
(``collect_events``, checked against a scripted event stream the checker serves)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from course.checks import Exercise, Incorrect, Mistake
from course.notify import _server_sent_events

__all__ = ["collect_events", "expected_requests", "format_event"]

# (users, seconds, messages, interval): short runs (shorter than the long-poll
# timeout), nothing fails, each reader gets its messages one at a time.
_CASES = [
    (30, 6.0, 45, 1.0),
    (100, 60.0, 10, 5.0),
    (10, 10.0, 200, 0.5),
    (1, 20.0, 1, 2.0),
]


def _answer(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    if transport == "poll":
        return users * seconds / interval  # every reader asks every interval, news or not
    if transport == "longpoll":
        return users + messages  # one waiting request each, and a new one after every answer
    if transport == "sse":
        return users  # one stream each, open for the whole run
    raise ValueError(f"unknown transport {transport!r}")


def _check(predict: Callable[[str, int, float, int, float], float]) -> None:
    hints = {
        "poll": "a poller asks every `interval` seconds whether or not anything happened: "
        "how many times does each of the `users` ask in `seconds`?",
        "longpoll": "each reader has one request waiting from the start, and asks again "
        "right after every answer (and an answer comes with each message).",
        "sse": "each reader opens one stream and keeps it for the whole run; messages "
        "travel on it without new requests.",
    }
    for transport in ("poll", "longpoll", "sse"):
        for users, seconds, messages, interval in _CASES:
            want = _answer(transport, users, seconds, messages, interval)
            got = predict(transport, users, seconds, messages, interval)
            Incorrect.unless(
                isinstance(got, (int, float)),
                f"expected_requests({transport!r}, ...) should return a number, got {got!r}",
            )
            # Polling may count the first request at time 0 (one more per user).
            slack = users if transport == "poll" else 0
            if not want - 0.01 <= got <= want + slack + 0.01:
                direction = "too many" if got > want else "too few"
                raise Incorrect(
                    f"{transport} with {users} users, {seconds:g} s, {messages} messages, "
                    f"interval {interval:g} s: {got:g} requests is {direction}. "
                    f"Think again: {hints[transport]}"
                )


def _per_message_poll(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    # Mistake: polling costs a request per message, like the push transports.
    return {"poll": messages, "longpoll": users + messages, "sse": users}[transport]


def _long_poll_without_first_requests(
    transport: str, users: int, seconds: float, messages: int, interval: float
) -> float:
    # Mistake: forgets that every reader has a request waiting before any message.
    return {"poll": users * seconds / interval, "longpoll": messages, "sse": users}[transport]


def _stream_per_message(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    # Mistake: treats SSE like long polling (a new request after every event).
    return {"poll": users * seconds / interval, "longpoll": users + messages, "sse": users + messages}[transport]


def _poll_forgets_users(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    # Mistake: counts one reader's polls only.
    return {"poll": seconds / interval, "longpoll": users + messages, "sse": users}[transport]


expected_requests = Exercise(
    "expected_requests",
    checker=_check,
    hint_text=(
        "Count what each reader sends. A poller sends one request per `interval` "
        "for the whole run. A long poller has one request waiting from the start and "
        "sends a new one after each answer. An SSE reader opens one stream. Then "
        "multiply (or add) over the `users`."
    ),
    answer=_answer,
    wrong_answers=(
        Mistake(_per_message_poll, "poll with 30 users, 6 s, 45 messages, interval 1 s: 45 requests is too few"),
        Mistake(_long_poll_without_first_requests, "longpoll with 30 users, 6 s, 45 messages, interval 1 s: 45"),
        Mistake(_stream_per_message, "sse with 30 users, 6 s, 45 messages, interval 1 s: 75 requests is too many"),
        Mistake(_poll_forgets_users, "poll with 30 users, 6 s, 45 messages, interval 1 s: 6 requests is too few"),
    ),
    solution_code="""def expected_requests(transport, users, seconds, messages, interval):
    if transport == "poll":
        return users * seconds / interval   # asks every interval, news or not
    if transport == "longpoll":
        return users + messages             # one waiting each + one after every answer
    if transport == "sse":
        return users                        # one stream each, kept open
""",
    success="that is the cost model; now see how the measurement compares.",
)


# -- format_event: one Server-Sent Events frame --------------------------------------------------

# (id, event name, data): JSON, several lines, non-ASCII text, leading spaces, every kind of
# line end, a Unicode line separator (not a line end for SSE), and empty data.
_FRAMES: tuple[tuple[int, str, str], ...] = (
    (1, "unread_message_count", '{"count": 3}'),
    (2, "message", "first line\nsecond line"),
    (3, "message", "Grüße 👋 — naïve café"),
    (4, "message", "  two leading spaces"),
    (5, "message", "a\r\nb\rc"),
    (6, "message", "para\u2028graph"),
    (7, "message", ""),
)
_LINE_END = re.compile(r"\r\n|\r|\n")


class _Lines:
    """What ``course.notify``'s SSE parser reads: an object whose ``content`` yields lines of bytes."""

    def __init__(self, text: str) -> None:
        self.content = self._lines(text.encode("utf-8"))

    @staticmethod
    async def _lines(body: bytes) -> AsyncIterator[bytes]:
        for line in body.splitlines(keepends=True):  # bytes split on \n and \r, as a browser does
            yield line


async def _read_events(text: str) -> list[tuple[str | None, str | None]]:
    return [(event.id, event.data) async for event in _server_sent_events(_Lines(text))]  # type: ignore[arg-type]


def _event_names(frame: str) -> list[str]:
    return [line.partition(":")[2].removeprefix(" ") for line in _LINE_END.split(frame) if line.startswith("event:")]


async def _check_format_event(format_event: Any) -> None:
    Incorrect.unless(callable(format_event), "Answer with a function: def format_event(id, name, data) -> str")
    frames = []
    for id_, name, data in _FRAMES:
        call = f"format_event({id_}, {name!r}, {data!r})"
        frame = format_event(id_, name, data)
        Incorrect.unless(isinstance(frame, str), f"{call} returned {frame!r}: return the frame as a str")
        frames.append(frame)
        events = await _read_events(frame)
        want = _LINE_END.sub("\n", data)
        if not events:
            raise Incorrect(
                f"{call} returned {frame!r}, and a reader saw no event in it: every event needs a "
                "data line (even for empty data) and ends with a blank line"
            )
        Incorrect.unless(len(events) == 1, f"{call} returned {frame!r}, which a reader reads as {len(events)} events")
        got_id, got_data = events[0]
        Incorrect.unless(got_id == str(id_), f"{call} returned {frame!r}: a reader received the id {got_id!r}")
        if got_data != want:
            advice = (
                "A reader drops the one space after 'data:', so write it, then the value as it is"
                if got_data == want[1:]
                else "Only CR, LF and CRLF end a line in an event stream, and each line of data needs "
                "a 'data:' line of its own"
            )
            raise Incorrect(
                f"{call} returned {frame!r}: a reader received the data {got_data!r}, not {want!r}. {advice}"
            )
        names = _event_names(frame)
        Incorrect.unless(
            names == [name], f"{call} returned {frame!r}: the event names in it are {names}, not [{name!r}]"
        )
    together = await _read_events("".join(frames))
    Incorrect.unless(
        [id_ for id_, _ in together] == [str(id_) for id_, _, _ in _FRAMES],
        f"the {len(frames)} frames sent one after the other were read as events with ids "
        f"{[id_ for id_, _ in together]}: each frame must end with a blank line",
    )


def _format_event(id: int, name: str, data: str) -> str:
    """One SSE event: its id, its name, one data line per line of ``data``, then a blank line."""
    pieces = re.split(r"\r\n|\r|\n", data)  # the only line ends of an event stream
    data_lines = "".join(f"data: {piece}\n" for piece in pieces)
    return f"id: {id}\nevent: {name}\n{data_lines}\n"


def _no_blank_line(id: int, name: str, data: str) -> str:
    # Mistake: the frame never ends, so a reader waits for more lines.
    return f"id: {id}\nevent: {name}\ndata: {data}\n"


def _one_data_line(id: int, name: str, data: str) -> str:
    # Mistake: data with a newline in it becomes a second line that is no field at all.
    return f"id: {id}\nevent: {name}\ndata: {data}\n\n"


def _splits_on_every_separator(id: int, name: str, data: str) -> str:
    # Mistake: str.splitlines() also splits on characters an event stream keeps (U+2028, ...).
    data_lines = "".join(f"data: {part}\n" for part in data.splitlines() or [""])
    return f"id: {id}\nevent: {name}\n{data_lines}\n"


def _no_space_after_colon(id: int, name: str, data: str) -> str:
    # Mistake: "data:" glued to the value; a reader drops one leading space of the value.
    data_lines = "".join(f"data:{part}\n" for part in _LINE_END.split(data))
    return f"id:{id}\nevent:{name}\n{data_lines}\n"


format_event = Exercise(
    "format_event",
    checker=_check_format_event,
    hint_text=(
        "An event is lines of `field: value`, ended by one empty line. Write `id: ...` and "
        "`event: ...`, then split the data at CRLF, CR and LF (a regular expression, not "
        "`str.splitlines()`, which splits at more) and write one `data: ` line per piece, "
        "even when the data is empty."
    ),
    answer=_format_event,
    wrong_answers=(
        Mistake(_no_blank_line, "a reader saw no event in it"),
        Mistake(_one_data_line, "a reader received the data 'first line', not 'first line\\nsecond line'"),
        Mistake(_splits_on_every_separator, "a reader received the data 'para\\ngraph'"),
        Mistake(_no_space_after_colon, "a reader received the data ' two leading spaces'"),
    ),
    success="every reader gets the same id, name and data back.",
)


# -- collect_events: an SSE client that resumes with Last-Event-ID -------------------------------

_STREAM = ("event 1", "event 2", "line one\nline two", "event 4", "Grüße 👋 5", "event 6", "event 7", "event 8")
_PER_CONNECTION = 3  # events the scripted server sends before it ends a connection


@dataclass
class _ScriptedStream:
    """An event stream that ends every connection after a few events, the last one cut short."""

    headers: list[str | None] = field(default_factory=list)  # Last-Event-ID of each connection
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        self.headers.append(last)
        start = int(last) if last is not None and last.isdigit() else 0
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(b"retry: 10\n\n: a comment, as a keep-alive\n\n")
        upto = min(start + _PER_CONNECTION, len(_STREAM))
        for number in range(start + 1, upto + 1):
            await response.write(_format_event(number, "message", _STREAM[number - 1]).encode())
        if upto < len(_STREAM):  # the next event, cut off before its end: it does not count
            await response.write(f"id: {upto + 1}\ndata: {_STREAM[upto]} (cut off".encode())
            return response  # the server ends this connection
        await self.finished.wait()  # all sent: the stream stays open
        return response


async def _check_collect_events(collect_events: Any) -> None:
    Incorrect.unless(
        callable(collect_events), "Answer with an async function: async def collect_events(session, url, count)"
    )
    server = _ScriptedStream()
    app = web.Application()
    app.router.add_get("/events", server.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/events"
    try:
        async with aiohttp.ClientSession() as session:
            try:
                got = await asyncio.wait_for(collect_events(session, url, len(_STREAM)), 10)
            except TimeoutError:
                raise Incorrect(
                    f"collect_events(session, url, {len(_STREAM)}) did not return within 10 s; the server "
                    f"had seen {len(server.headers)} connection(s). Return as soon as you have `count` "
                    "events: the stream stays open after the last one"
                ) from None
    finally:
        server.finished.set()
        await runner.cleanup()
    _judge_collected(got, server.headers)


def _judge_collected(got: Any, headers: list[str | None]) -> None:
    want = list(_STREAM)
    Incorrect.unless(isinstance(got, list), f"collect_events returned {got!r}: return a list of the events' data")
    for number, header in enumerate(headers[1:], start=2):
        delivered_before = min((number - 1) * _PER_CONNECTION, len(want))
        Incorrect.unless(
            header is not None,
            f"connection {number} came without a Last-Event-ID header, so the server started over from "
            f"event 1 (you had received {delivered_before} events): send the id of the last complete event",
        )
    if got == want:
        return
    cut = [data for data in got if isinstance(data, str) and "(cut off" in data]
    if cut:
        raise Incorrect(
            f"you returned {cut[0]!r}: an event the server never finished (the connection ended before "
            "its blank line). An event is complete only at its blank line"
        )
    if len(got) < len(want) and got == want[: len(got)]:
        raise Incorrect(
            f"you returned {len(got)} events of {len(want)}: the server ended the stream after event "
            f"{_PER_CONNECTION} (as servers and proxies do); reconnect, with Last-Event-ID"
        )
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    raise Incorrect(
        f"event {first + 1}: you returned {got[first] if first < len(got) else 'nothing'!r}, the stream "
        f"sent {want[first] if first < len(want) else 'nothing'!r} (your list: {got!r})"
    )


async def _collect_events(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    """The data of the first ``count`` events at ``url``, reconnecting with ``Last-Event-ID``."""
    collected: list[str] = []
    last_complete: str | None = None
    while True:
        headers = {"Accept": "text/event-stream"}
        if last_complete is not None:
            headers["Last-Event-ID"] = last_complete
        async with session.get(url, headers=headers) as reply:
            reply.raise_for_status()
            pending_id, data_lines = last_complete, []
            async for raw in reply.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line:
                    key, _, value = line.partition(":")
                    if key == "data":
                        data_lines.append(value.removeprefix(" "))
                    elif key == "id":
                        pending_id = value.removeprefix(" ")
                    continue
                if data_lines:  # a blank line completes the event
                    collected.append("\n".join(data_lines))
                    last_complete, data_lines = pending_id, []
                    if len(collected) == count:
                        return collected
        await asyncio.sleep(0.01)  # the server asked for a 10 ms pause ("retry: 10")


async def _forgetful(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    # Mistake: reconnects like a fresh client, without Last-Event-ID, so the server starts over.
    collected: list[str] = []
    while len(collected) < count:
        async with session.get(url) as reply:  # no Last-Event-ID
            lines: list[str] = []
            async for raw in reply.content:
                key, _, value = raw.decode().rstrip("\r\n").partition(":")
                if key == "data":
                    lines.append(value.removeprefix(" "))
                elif not key and not value and lines:
                    collected.append("\n".join(lines))
                    lines = []
                    if len(collected) == count:
                        break
    return collected


async def _delivers_each_data_line(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    # Mistake: treats every data line as an event (and resumes after the last id it saw).
    collected: list[str] = []
    last_id: str | None = None
    while len(collected) < count:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        async with session.get(url, headers=headers) as reply:
            async for raw in reply.content:
                key, _, value = raw.decode().rstrip("\r\n").partition(":")
                if key == "id":
                    last_id = value.strip()
                elif key == "data":
                    collected.append(value.removeprefix(" "))
                    if len(collected) == count:
                        break
    return collected


async def _reads_one_connection(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    # Mistake: returns when the server ends the stream, without reconnecting.
    collected: list[str] = []
    lines: list[str] = []
    async with session.get(url) as reply:
        async for raw in reply.content:
            key, _, value = raw.decode().rstrip("\r\n").partition(":")
            if key == "data":
                lines.append(value.removeprefix(" "))
            elif not key and not value and lines:
                collected.append("\n".join(lines))
                lines = []
                if len(collected) == count:
                    break
    return collected


collect_events = Exercise(
    "collect_events",
    checker=_check_collect_events,
    hint_text=(
        "Loop: open the stream (with a `Last-Event-ID` header once you have one), read it line by "
        "line, collect `data:` lines and remember the `id:`; at a blank line the event is complete: "
        "append the joined data lines and only now make its id the one to resume after. Return as "
        "soon as you have `count` events; when the server ends the stream, reconnect."
    ),
    answer=_collect_events,
    wrong_answers=(
        Mistake(_forgetful, "connection 2 came without a Last-Event-ID header"),
        Mistake(_delivers_each_data_line, "the connection ended before its blank line"),
        Mistake(_reads_one_connection, "you returned 3 events of 8"),
    ),
    timeout=20.0,
    success="every event once, in order, across three connections.",
)
