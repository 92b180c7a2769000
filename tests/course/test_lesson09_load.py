"""The capstone's load harness: its run records, and small crowds against a live messaging app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import course.delivery
from course.lesson09_load import Best, Crowd, Deliveries, LoadPlan, TransportRun
from course.servers import FAST_HASH, ServerHandle, start_messaging_app
from course.stats import Stats
from server.messaging.seed import DEMO_PASSWORD, seed_database

READERS, WRITERS = 4, 2


# -- the run records (no server) -------------------------------------------------------------


def test_the_notebook_finds_deliveries_here_and_it_is_the_shared_one() -> None:
    assert Deliveries is course.delivery.Deliveries


def made_run(transport: str, delays: list[float], requests: int, cpu: float | None) -> TransportRun:
    return TransportRun(
        transport=transport,
        readers=2,
        writers=1,
        sent=len(delays),
        send_failures=0,
        delays=tuple(sorted(delays)),
        requests=requests,
        notifications=len(delays),
        reader_errors=0,
        send_rate=10.0,
        send_stats=Stats().snapshot(),
        server_cpu=cpu,
        followed_for=5.0,
    )


def test_best_takes_each_figure_at_its_lowest_over_the_runs() -> None:
    steady = made_run("sse", [0.02] * 19 + [0.03], requests=22, cpu=1.5)
    stalled = made_run("sse", [0.01] * 17 + [2.0] * 3, requests=20, cpu=3.0)  # a stall hit three messages
    best = Best.of([stalled, steady])
    assert best.median == 0.01  # the stalled run's other messages were quicker
    assert best.p95 == 0.02  # nearest rank: the 19th of 20
    assert best.server_cpu == 1.5
    assert best.requests_per_notification == 1.0
    assert best.steadiest is steady
    assert best.row() == {
        "transport": "sse",
        "runs": 2,
        "median delay (ms)": 10,
        "p95 delay (ms)": 20,
        "requests / notification": 1.0,
        "server CPU (s)": 1.5,
    }


def test_best_ignores_unknown_cpu_and_refuses_mixed_transports() -> None:
    assert Best.of([made_run("poll", [0.5], 5, None), made_run("poll", [0.4], 5, 2.0)]).server_cpu == 2.0
    assert Best.of([made_run("poll", [0.5], 5, None)]).server_cpu is None
    with pytest.raises(ValueError, match="one transport"):
        Best.of([made_run("poll", [0.5], 5, 1.0), made_run("sse", [0.5], 5, 1.0)])
    with pytest.raises(ValueError, match="none"):
        Best.of([])


def test_unknown_transport_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="longpoll"):
        LoadPlan("websocket").follow_options()


def test_plan_counts_messages_from_rate_and_seconds() -> None:
    assert LoadPlan("poll", rate=12, seconds=5).messages == 60


# -- a small crowd against the real app ---------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    folder = tmp_path_factory.mktemp("capstone-app")
    database = f"sqlite:///{folder / 'messaging.db'}"
    handle = start_messaging_app(
        port=None,
        folder=folder,
        config={
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "MESSAGING_THREADS": str(2 * READERS + WRITERS + 16),
            "LONG_POLL_TIMEOUT": "20",
        },
        reuse=False,
    )
    seed_database(database, users=READERS + WRITERS, messages=0, PASSWORD_HASH_METHOD=FAST_HASH)
    yield handle
    handle.stop()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_every_message_reaches_its_reader_once(app: ServerHandle, transport: str) -> None:
    names = [f"user{i}" for i in range(1, READERS + WRITERS + 1)]
    async with await Crowd.sign_in(app.url, names[:READERS], names[READERS:], DEMO_PASSWORD) as crowd:
        # 8 messages for 4 readers: two each, so each reader's count rises twice.
        plan = LoadPlan(transport, rate=8, seconds=1, poll_interval=0.5, warm_up=1.0, drain=30)
        run = await crowd.run(plan, server_pid=app.process.pid)
    assert run.send_failures == 0
    assert run.sent == run.delivered == 8
    assert run.notifications >= READERS  # polling may report two messages with one notification
    assert run.notifications <= run.sent
    assert all(delay > 0 for delay in run.delays)
    assert run.server_cpu is not None and run.server_cpu > 0
    if transport == "sse":
        assert run.requests == READERS  # one stream per reader, never reopened
    if transport == "longpoll":
        assert run.requests >= run.notifications + READERS


@pytest.mark.slow
async def test_a_second_run_starts_from_each_readers_current_count(app: ServerHandle) -> None:
    names = [f"user{i}" for i in range(1, READERS + WRITERS + 1)]
    async with await Crowd.sign_in(app.url, names[:READERS], names[READERS:], DEMO_PASSWORD) as crowd:
        first = await crowd.run(LoadPlan("sse", rate=8, seconds=0.5, warm_up=0.5, drain=30))
        second = await crowd.run(LoadPlan("longpoll", rate=8, seconds=0.5, warm_up=0.5, drain=30))
    # The second run expects the counts the first one left behind, not counts from zero.
    assert first.delivered == first.sent == 4
    assert second.delivered == second.sent == 4
    assert second.requests >= second.notifications + READERS


def test_a_crowd_needs_readers_and_writers() -> None:
    with pytest.raises(ValueError, match="reader"):
        Crowd("http://127.0.0.1:1", [], [])
