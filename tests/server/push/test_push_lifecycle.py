"""Restarts, missed wake-ups, dead peers and several workers: nothing is lost."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket

import aiohttp
import pytest
from push_helpers import EventReader, app_notifications, query, send, write_without_notify

from course.servers import ServerHandle
from server.push.app import RECONNECT_MS
from server.push.store import listener_name

pytestmark = pytest.mark.timeout(240)


async def health(client: aiohttp.ClientSession, gateway: ServerHandle) -> dict[str, int]:
    async with client.get(f"{gateway.url}/healthz") as response:
        info: dict[str, int] = await response.json()
        return info


async def test_sigterm_tells_clients_to_reconnect_and_they_resume_without_loss(
    start_gateway, messaging_app, database_url, people, client
):
    alice, bob = people
    gateway = start_gateway("--recheck", "3600")
    async with (
        client.ws_connect(f"{gateway.url}/ws", headers=bob.headers) as socket_,
        client.get(f"{gateway.url}/stream", headers=bob.headers) as response,
    ):
        events = EventReader(response)
        await send(messaging_app.url, database_url, alice, bob)
        (first,) = await socket_.receive_json(timeout=60)
        assert json.loads((await events.next_data()).fields["data"]) == first
        cursor = first["id"]

        stopping = asyncio.create_task(asyncio.to_thread(gateway.stop, 30.0))
        closed = await socket_.receive(timeout=60)
        rest = await events.rest()
        await stopping
    assert closed.type == aiohttp.WSMsgType.CLOSE
    assert closed.data == 1012 and closed.extra == "service restart"
    assert rest[-1].fields == {"retry": str(RECONNECT_MS)}  # then the response ended
    assert gateway.process is not None and gateway.process.returncode == 0

    # Written while no gateway runs: its NOTIFY reaches nobody.
    await send(messaging_app.url, database_url, alice, bob)
    missed = await app_notifications(messaging_app.url, bob, after=cursor)
    assert [n["id"] for n in missed] == [cursor + 1]

    again = start_gateway("--recheck", "3600", port=gateway.port)
    async with client.ws_connect(f"{again.url}/ws?after={cursor}", headers=bob.headers) as socket_:
        assert await socket_.receive_json(timeout=60) == missed
    headers = {**bob.headers, "Last-Event-ID": str(cursor)}
    async with client.get(f"{again.url}/stream", headers=headers) as response:
        event = await EventReader(response).next_data()
    assert event.fields["id"] == str(cursor + 1)
    assert json.loads(event.fields["data"]) == missed[0]


async def test_the_periodic_recheck_delivers_a_notification_whose_notify_was_lost(
    start_gateway, messaging_app, database_url, people, client
):
    _, bob = people
    gateway = start_gateway("--recheck", "0.2")
    async with client.ws_connect(f"{gateway.url}/ws", headers=bob.headers) as socket_:
        async with client.get(f"{gateway.url}/stream", headers=bob.headers) as response:
            events = EventReader(response)
            await events.next()  # the stream is held
            seq = await asyncio.to_thread(write_without_notify, database_url, bob.user_id)
            event = await events.next_data()
        pushed = await socket_.receive_json(timeout=60)
    expected = await app_notifications(messaging_app.url, bob)
    assert [n["id"] for n in expected] == [seq]
    assert pushed == expected
    assert json.loads(event.fields["data"]) == expected[0]
    assert (await health(client, gateway))["wakeups"] == 0  # no NOTIFY did it


async def test_a_websocket_peer_that_answers_no_ping_is_dropped(start_gateway, people, client):
    _, bob = people
    gateway = start_gateway("--heartbeat", "0.3")
    request = (
        "GET /ws HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{gateway.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Cookie: session={bob.cookie}\r\n\r\n"
    )
    with socket.create_connection((gateway.host, gateway.port), timeout=30) as peer:
        peer.sendall(request.encode())
        assert peer.recv(4096).startswith(b"HTTP/1.1 101")
        # Now silent: reads nothing, answers no ping (a peer that vanished).
        for _ in itertools.count():  # until the gateway let it go (the test's timeout guards)
            if (await health(client, gateway))["connections"] == 0:
                break
            await asyncio.sleep(0.1)


async def test_two_workers_share_the_port_and_each_delivers(start_gateway, messaging_app, database_url, people, client):
    alice, bob = people
    gateway = start_gateway("--workers", "2", "--recheck", "3600")
    pids: set[int] = set()
    while len(pids) < 2:  # each request a new connection: the kernel spreads them
        async with aiohttp.ClientSession() as fresh:
            pids.add((await health(fresh, gateway))["pid"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        sockets = [await fresh.ws_connect(f"{gateway.url}/ws", headers=bob.headers) for _ in range(6)]
        try:
            await send(messaging_app.url, database_url, alice, bob)
            expected = await app_notifications(messaging_app.url, bob)
            for socket_ in sockets:
                assert await socket_.receive_json(timeout=60) == expected
            held: dict[int, int] = {}
            while len(held) < 2:
                async with aiohttp.ClientSession() as probe:
                    info = await health(probe, gateway)
                held[info["pid"]] = info["connections"]
            assert sum(held.values()) == 6
            stopping = asyncio.create_task(asyncio.to_thread(gateway.stop, 30.0))
            for socket_ in sockets:
                closed = await socket_.receive(timeout=60)
                assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1012
            await stopping
        finally:
            for socket_ in sockets:
                await socket_.close()
    assert gateway.process is not None and gateway.process.returncode == 0


async def test_a_lost_listen_connection_is_reopened_and_everything_re_read(
    start_gateway, messaging_app, database_url, people, client
):
    alice, bob = people
    gateway = start_gateway("--recheck", "3600")
    async with client.ws_connect(f"{gateway.url}/ws", headers=bob.headers) as socket_:
        await send(messaging_app.url, database_url, alice, bob)
        await socket_.receive_json(timeout=60)  # the stream is settled: no read of its own pending
        seq = await asyncio.to_thread(write_without_notify, database_url, bob.user_id)  # no NOTIFY
        name = listener_name((await health(client, gateway))["pid"])
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
        ended = await asyncio.to_thread(query, database_url, terminate, name)
        assert ended == [(True,)]  # the gateway's one LISTEN connection
        pushed = await socket_.receive_json(timeout=60)  # read again once listening again
    assert [n["id"] for n in pushed] == [seq]
    assert pushed == await app_notifications(messaging_app.url, bob, after=seq - 1)
