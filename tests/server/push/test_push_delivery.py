"""The gateway delivers what the app commits, on /stream (SSE) and /ws, from a cursor.

A real PostgreSQL server, the real Flask app on it (users, sessions,
messages) and a real gateway process. The test sends the NOTIFY the app's
writer sends on commit (PUSH-CONTRACT.md); the module's gateway re-checks
only once an hour, so what arrives here arrived by that NOTIFY.
"""

from __future__ import annotations

import json

import pytest
from push_helpers import EventReader, app_notifications, send

pytestmark = pytest.mark.timeout(180)


async def test_sse_delivers_what_the_app_committed_in_the_app_s_event_format(
    gateway, messaging_app, database_url, people, client
):
    alice, bob = people
    async with client.get(f"{gateway.url}/stream", headers=bob.headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = EventReader(response)
        first = await events.next()
        assert first is not None and "retry" in first.fields  # as the app's stream starts
        await send(messaging_app.url, database_url, alice, bob)
        event = await events.next_data()
    expected = await app_notifications(messaging_app.url, bob)
    assert len(expected) == 1
    assert event.fields["id"] == str(expected[0]["id"])
    assert json.loads(event.fields["data"]) == expected[0]


async def test_sse_resumes_after_last_event_id_and_after(gateway, messaging_app, database_url, people, client):
    alice, bob = people
    await send(messaging_app.url, database_url, alice, bob)
    await send(messaging_app.url, database_url, alice, bob)
    (latest,) = await app_notifications(messaging_app.url, bob)  # one row per name, replaced
    older = latest["id"] - 1
    # A stream from the newest cursor gets nothing until the next message, even while
    # another stream of the same user, from an older cursor, is sent the latest one.
    up_to_date = {**bob.headers, "Last-Event-ID": str(latest["id"])}
    async with client.get(f"{gateway.url}/stream", headers=up_to_date) as current:
        current_events = EventReader(current)
        await current_events.next()  # held by the gateway now
        for headers, params in (({"Last-Event-ID": str(older)}, {}), ({}, {"after": str(older)})):
            async with client.get(
                f"{gateway.url}/stream", headers={**bob.headers, **headers}, params=params
            ) as response:
                event = await EventReader(response).next_data()
            assert json.loads(event.fields["data"]) == latest
        await send(messaging_app.url, database_url, alice, bob)
        event = await current_events.next_data()
    assert int(event.fields["id"]) == latest["id"] + 1


async def test_websocket_delivers_json_lists_as_notifications_returns(
    gateway, messaging_app, database_url, people, client
):
    alice, bob = people
    await send(messaging_app.url, database_url, alice, bob)
    async with client.ws_connect(f"{gateway.url}/ws", headers=bob.headers) as socket:
        catch_up = await socket.receive_json(timeout=60)
        assert catch_up == await app_notifications(messaging_app.url, bob)
        await send(messaging_app.url, database_url, alice, bob)
        pushed = await socket.receive_json(timeout=60)
    assert pushed == await app_notifications(messaging_app.url, bob, after=catch_up[-1]["id"])
    assert pushed[0]["id"] == catch_up[-1]["id"] + 1


async def test_websocket_resumes_after_its_cursor(gateway, messaging_app, database_url, people, client):
    alice, bob = people
    await send(messaging_app.url, database_url, alice, bob)
    (latest,) = await app_notifications(messaging_app.url, bob)
    url = f"{gateway.url}/ws?after={latest['id']}"
    async with client.ws_connect(url, headers=bob.headers) as socket:
        await send(messaging_app.url, database_url, alice, bob)
        pushed = await socket.receive_json(timeout=60)
    assert [n["id"] for n in pushed] == [latest["id"] + 1]


async def test_a_cookie_of_one_user_never_reads_another_user_s_notifications(
    gateway, messaging_app, database_url, people, client
):
    alice, bob = people
    await send(messaging_app.url, database_url, alice, bob)  # bob's, committed first
    url = f"{gateway.url}/stream"
    async with client.get(url, params={"user": str(bob.user_id)}, headers=alice.headers) as response:
        events = EventReader(response)
        await send(messaging_app.url, database_url, bob, alice)  # then one of alice's
        event = await events.next_data()
    assert json.loads(event.fields["data"]) == (await app_notifications(messaging_app.url, alice))[0]
    async with client.ws_connect(f"{gateway.url}/ws?user={bob.user_id}", headers=alice.headers) as socket:
        received = await socket.receive_json(timeout=60)
    assert received == await app_notifications(messaging_app.url, alice)


async def test_idle_streams_get_heartbeats(gateway, people, client):
    _, bob = people
    async with client.get(f"{gateway.url}/stream", headers=bob.headers) as response:
        events = EventReader(response)
        comments: list[str] = []
        while not comments:
            event = await events.next()
            assert event is not None
            comments = event.comments
    assert comments == ["keep-alive"]


async def test_bad_cursors_are_400_json(gateway, people, client):
    _, bob = people
    for params, headers in (
        ({"after": "-1"}, {}),
        ({"after": "abc"}, {}),
        ({"after": str(2**31)}, {}),
        ({}, {"Last-Event-ID": "1e3"}),
    ):
        async with client.get(f"{gateway.url}/stream", params=params, headers={**bob.headers, **headers}) as response:
            assert response.status == 400
            assert "must be" in (await response.json())["error"]


async def test_healthz_counts_the_streams_held(gateway, people, client):
    _, bob = people
    async with client.get(f"{gateway.url}/stream", headers=bob.headers) as response:
        await EventReader(response).next()
        async with client.get(f"{gateway.url}/healthz") as health:
            info = await health.json()
    assert info["server"] == "push"
    assert info["connections"] >= 1 and info["sse"] >= 1 and info["users"] >= 1
    assert info["listening"] is True
    assert isinstance(info["pid"], int)


async def test_unknown_paths_and_methods_are_json_errors(gateway, client):
    async with client.get(f"{gateway.url}/nothing-here") as response:
        assert response.status == 404
        assert "GET /stream" in (await response.json())["error"]
    async with client.post(f"{gateway.url}/stream") as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        assert "error" in await response.json()
    async with client.get(f"{gateway.url}/ws") as response:  # no upgrade, and no cookie
        assert response.status in (400, 401)
        assert "error" in await response.json()


async def test_a_stream_owed_nothing_costs_no_read_and_still_gets_the_next_message(
    start_gateway, messaging_app, database_url, people, client
):
    alice, bob = people
    await send(messaging_app.url, database_url, alice, bob)
    (latest,) = await app_notifications(messaging_app.url, bob)
    gateway = start_gateway("--recheck", "3600")  # its own: /healthz counts this process's reads
    up_to_date = {**bob.headers, "Last-Event-ID": str(latest["id"])}
    async with client.get(f"{gateway.url}/stream", headers=up_to_date) as current:
        current_events = EventReader(current)
        await current_events.next()  # held now
        async with client.get(f"{gateway.url}/healthz") as health:
            assert (await health.json())["reads"] == 0  # its cursor was the newest: nothing to read
        async with client.get(f"{gateway.url}/stream", headers=bob.headers) as behind:  # from 0: owed one
            assert json.loads((await EventReader(behind).next_data()).fields["data"]) == latest
        async with client.get(f"{gateway.url}/healthz") as health:
            assert (await health.json())["reads"] == 1  # that one, and none for the stream up to date
        await send(messaging_app.url, database_url, alice, bob)
        event = await current_events.next_data()
    assert int(event.fields["id"]) == latest["id"] + 1
