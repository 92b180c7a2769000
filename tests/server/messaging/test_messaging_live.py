"""The app served by waitress in its own process, over real sockets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from messaging_helpers import FAST_HASH, LIVE_CONFIG, TIMEOUT, WebUser
from sqlalchemy import select

from course.servers import ServerHandle, start_messaging_app
from server.messaging import create_app
from server.messaging.extensions import db
from server.messaging.models import User

_names = iter(range(10**6))


def pair(server: ServerHandle) -> tuple[WebUser, WebUser]:
    """Two fresh users, both logged in: (sender, recipient)."""
    n = next(_names)
    return (
        WebUser(server.url, f"sender{n}").register_and_login(),
        WebUser(server.url, f"reader{n}").register_and_login(),
    )


class EventReader:
    """Reads a text/event-stream response into (id, data) events and comments."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.chunks = response.iter_content(chunk_size=None, decode_unicode=True)
        self.buffer = ""

    def next_block(self) -> str:
        while "\n\n" not in self.buffer:
            self.buffer += next(self.chunks)
        block, self.buffer = self.buffer.split("\n\n", 1)
        return block

    def next_event(self) -> tuple[int, dict]:
        while True:
            fields = dict(
                line.split(": ", 1) for line in self.next_block().splitlines() if not line.startswith(":")
            )
            if "data" in fields:
                return int(fields["id"]), json.loads(fields["data"])


@pytest.fixture(scope="module")
def rechecking_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rechecking")


@pytest.fixture(scope="module")
def rechecking_server(rechecking_folder: Path) -> Iterator[ServerHandle]:
    """A server whose waiters re-read the database often (as with several processes)."""
    handle = start_messaging_app(
        port=None,
        folder=rechecking_folder,
        config={**LIVE_CONFIG, "NOTIFY_RECHECK_SECONDS": "0.5"},
        reuse=False,
    )
    yield handle
    handle.stop()


# -- every route over HTTP -------------------------------------------------------------


def test_healthz_over_http(live_server):
    info = requests.get(live_server.url + "/healthz", timeout=TIMEOUT).json()
    assert info["server"] == "messaging" and info["version"]


def test_the_lesson_flow_over_http(live_server):
    alice, bob = pair(live_server)
    assert alice.get(f"/user/{bob.username}").status_code == 200
    answer = alice.send(bob.username, "over the wire")
    assert answer.status_code == 302 and answer.headers["Location"] == f"/user/{bob.username}"
    assert [n["data"] for n in bob.get("/notifications").json()] == [1]
    assert alice.username in bob.get("/").text
    page = bob.get("/messages")
    assert "over the wire" in page.text
    assert [n["data"] for n in bob.get("/notifications").json()] == [0]
    assert alice.get("/send_message/nobody-here").status_code == 404
    bob.logout()
    assert bob.get("/notifications").status_code == 401


def test_notifications_without_a_session_are_401_json_over_http(live_server):
    answer = requests.get(live_server.url + "/notifications", timeout=TIMEOUT, allow_redirects=False)
    assert answer.status_code == 401
    assert answer.headers["Content-Type"].startswith("application/json")


# -- long polling --------------------------------------------------------------------------


def test_long_poll_answers_at_once_when_something_is_newer(live_server):
    alice, bob = pair(live_server)
    alice.send(bob.username, "hi")
    notes = bob.get("/notifications/wait?after=0&timeout=5").json()
    assert [n["data"] for n in notes] == [1]


def test_long_poll_gives_an_empty_list_after_its_timeout(live_server):
    _, bob = pair(live_server)
    started = time.monotonic()
    assert bob.get("/notifications/wait?after=0&timeout=1").json() == []
    assert time.monotonic() - started >= 0.9  # it did wait


def wait_in_background(user: WebUser) -> tuple[threading.Thread, list[list[dict]]]:
    """A long poll from ``after=0`` (up to 30 s) in a thread; its answer lands in the list."""
    answers: list[list[dict]] = []
    waiter = threading.Thread(
        target=lambda: answers.append(user.get("/notifications/wait?after=0&timeout=30", timeout=(5, 60)).json())
    )
    waiter.start()
    return waiter, answers


def test_long_poll_is_woken_by_a_new_message(live_server):
    """LIVE_CONFIG re-checks the database only every 60 s: only the hub can wake it."""
    alice, bob = pair(live_server)
    waiter, answers = wait_in_background(bob)
    time.sleep(0.5)
    alice.send(bob.username, "wake up")
    waiter.join(timeout=90)
    assert [[n["data"] for n in answer] for answer in answers] == [[1]]


def test_long_poll_sees_writes_made_by_another_process(rechecking_server, rechecking_folder, tmp_path):
    """No hub wake-up crosses processes: the periodic re-check must find the row."""
    _, bob = pair(rechecking_server)
    waiter, answers = wait_in_background(bob)
    time.sleep(0.3)
    database = rechecking_folder / "messaging.db"
    other = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
            "INSTANCE_PATH": str(tmp_path),
            "PASSWORD_HASH_METHOD": FAST_HASH,
        }
    )
    with other.app_context():
        reader = db.session.scalar(select(User).where(User.username == bob.username))
        reader.add_notification("from_another_process", "hello")
        db.session.commit()
        db.engine.dispose()
    waiter.join(timeout=90)
    assert [[n["name"] for n in answer] for answer in answers] == [["from_another_process"]]


# -- Server-Sent Events ------------------------------------------------------------------------


def test_event_stream_delivers_new_notifications_while_it_stays_open(live_server):
    alice, bob = pair(live_server)
    with bob.get("/notifications/stream", stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = EventReader(response)
        assert events.next_block().startswith("retry:")
        for expected in (1, 2):
            alice.send(bob.username, f"message {expected}")
            _, note = events.next_event()
            assert (note["name"], note["data"]) == ("unread_message_count", expected)


def test_event_stream_resumes_after_last_event_id(live_server):
    alice, bob = pair(live_server)
    alice.send(bob.username, "one")
    with bob.get("/notifications/stream", stream=True) as response:
        first_id, note = EventReader(response).next_event()
    assert note["data"] == 1
    alice.send(bob.username, "two")
    with bob.get(
        "/notifications/stream", stream=True, headers={"Last-Event-ID": str(first_id)}
    ) as response:
        next_id, note = EventReader(response).next_event()
    assert next_id > first_id and note["data"] == 2


def test_a_long_poll_whose_client_hung_up_frees_its_seat(one_seat_server):
    _, bob = pair(one_seat_server)
    with pytest.raises(requests.ReadTimeout):
        bob.get("/notifications/wait?after=0&timeout=60", timeout=(5, 0.5))  # gives up after 0.5 s
    for _ in range(200):  # up to ~20 s; without the hang-up check the seat stays taken 60 s
        answer = bob.get("/notifications/wait?after=0&timeout=0")
        if answer.status_code == 200:
            break
        time.sleep(0.1)
    assert answer.status_code == 200


def test_idle_event_stream_sends_keep_alive_comments(live_server):
    _, bob = pair(live_server)
    with bob.get("/notifications/stream", stream=True) as response:
        events = EventReader(response)
        events.next_block()  # retry:
        assert events.next_block().startswith(":")  # SSE_HEARTBEAT_SECONDS=1 in tests


def test_event_stream_without_a_session_is_401(live_server):
    answer = requests.get(live_server.url + "/notifications/stream", timeout=TIMEOUT)
    assert answer.status_code == 401


# -- a bounded number of waiting requests ---------------------------------------------------------


@pytest.fixture(scope="module")
def one_seat_server(start_messaging) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    handle = start_messaging(
        "one-seat", **{**LIVE_CONFIG, "MAX_WAITING_REQUESTS": "1", "LONG_POLL_TIMEOUT": "60"}
    )
    yield handle
    handle.stop()


def test_waiting_requests_beyond_the_limit_get_503_and_pages_still_work(one_seat_server):
    alice, bob = pair(one_seat_server)
    with bob.get("/notifications/stream", stream=True) as holding:  # takes the only seat
        reader = EventReader(holding)  # keep it: dropping it closes the connection
        reader.next_block()
        busy = bob.get("/notifications/wait?after=0&timeout=1")
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        assert bob.get("/notifications/stream").status_code == 503
        assert alice.send(bob.username, "still works").status_code == 302
        assert bob.get("/notifications").status_code == 200
    # The closed stream's seat comes back once the server notices the hang-up.
    for _ in range(100):
        answer = bob.get("/notifications/wait?after=0&timeout=0")
        if answer.status_code == 200:
            break
        time.sleep(0.2)
    assert answer.status_code == 200
    assert [n["data"] for n in answer.json()] == [1]


# -- concurrency over HTTP ----------------------------------------------------------------------


@pytest.mark.slow
async def test_twenty_concurrent_senders_over_http_leave_one_row_counting_all(live_server):
    """20 users send 50 messages each at once through waitress' threads; a long-polling
    reader sees the count rise, never repeat or go back, and end at 1000."""
    from course import notify

    senders, each = 20, 50
    url = live_server.url
    reader = notify.client_session()
    reader_name = f"target{next(_names)}"
    await notify.register(reader, url, reader_name, "pw")
    await notify.login(reader, url, reader_name, "pw")
    sessions = []
    for _ in range(senders):
        session = notify.client_session()
        name = f"crowd{next(_names)}"
        await notify.register(session, url, name, "pw")
        await notify.login(session, url, name, "pw")
        sessions.append(session)

    seen: list[notify.Notification] = []
    finished = asyncio.Event()

    def on_notification(note: notify.Notification) -> None:
        seen.append(note)
        if note.data == senders * each:
            finished.set()

    follower = asyncio.create_task(notify.long_poll(reader, url, on_notification, wait=5))

    async def send_all(session) -> None:  # type: ignore[no-untyped-def]
        for i in range(each):
            await notify.send_message(session, url, reader_name, f"number {i}")

    try:
        await asyncio.gather(*(send_all(s) for s in sessions))
        await asyncio.wait_for(finished.wait(), 60)
        async with reader.get(f"{url}/notifications?since=0") as response:
            rows = await response.json()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        for session in [reader, *sessions]:
            await session.close()
    assert [(r["name"], r["data"]) for r in rows] == [("unread_message_count", senders * each)]
    ids, counts = [n.id for n in seen], [n.data for n in seen]
    assert ids == sorted(set(ids)) and counts == sorted(set(counts))
    assert counts[-1] == senders * each
