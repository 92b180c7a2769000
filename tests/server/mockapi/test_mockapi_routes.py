"""The public routes answer what the lesson's client code expects, and errors are JSON."""

from __future__ import annotations

import re

import pytest

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")


async def test_root_says_hello_world(client):
    response = await client.get("/")
    assert response.status == 200
    assert await response.text() == "Hello, world"


async def test_items_lists_every_id_in_order(client):
    response = await client.get("/items")
    assert response.status == 200
    assert await response.json() == list(range(1000))


async def test_items_count_follows_the_config(make_client):
    small = await make_client(items=7)
    assert await (await small.get("/items")).json() == list(range(7))
    assert (await small.get("/items/7")).status == 404


@pytest.mark.parametrize("item_id", [0, 1, 500, 999])
async def test_item_answers_a_realistic_email(client, item_id):
    response = await client.get(f"/items/{item_id}")
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == ["email"]
    assert EMAIL.match(body["email"]), body


async def test_item_email_is_stable_between_requests_and_servers(make_client):
    first, second = await make_client(seed=0), await make_client(seed=0)
    ids = [0, 1, 2, 3, 998, 999]
    a = [(await (await first.get(f"/items/{i}")).json())["email"] for i in ids]
    b = [(await (await second.get(f"/items/{i}")).json())["email"] for i in reversed(ids)]
    again = [(await (await first.get(f"/items/{i}")).json())["email"] for i in ids]
    assert a == list(reversed(b)) == again


async def test_different_seed_gives_different_emails(make_client):
    zero, one = await make_client(seed=0), await make_client(seed=1)
    a = [(await (await zero.get(f"/items/{i}")).json())["email"] for i in range(20)]
    b = [(await (await one.get(f"/items/{i}")).json())["email"] for i in range(20)]
    assert sum(x != y for x, y in zip(a, b, strict=True)) >= 15


async def test_emails_are_not_all_the_same(client):
    emails = {(await (await client.get(f"/items/{i}")).json())["email"] for i in range(50)}
    assert len(emails) >= 45


@pytest.mark.parametrize("bad_id", ["-1", "1000", "abc", "1.5", "01", "+1", "1e3", "99999999999999999999", "%C2%B2"])
async def test_unknown_or_malformed_id_is_404_json(client, bad_id):
    response = await client.get(f"/items/{bad_id}")
    assert response.status == 404
    body = await response.json()
    assert "0 to 999" in body["error"]


async def test_unknown_route_is_404_json(client):
    response = await client.get("/nothing/here")
    assert response.status == 404
    assert "/items" in (await response.json())["error"]


async def test_wrong_method_is_405_json_with_allow(client):
    response = await client.post("/items")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert "POST is not allowed" in (await response.json())["error"]


# -- pagination --------------------------------------------------------------


async def test_first_page_uses_default_page_size_and_links_the_next(client):
    body = await (await client.get("/items", params={"page": "1"})).json()
    assert body == {
        "items": list(range(100)),
        "page": 1,
        "per_page": 100,
        "total": 1000,
        "next": "/items?page=2&per_page=100",
    }


async def test_following_next_visits_every_id_once(client):
    url, seen = "/items?page=1&per_page=300", []
    while url is not None:
        response = await client.get(url)
        assert response.status == 200
        body = await response.json()
        seen += body["items"]
        url = body["next"]
    assert seen == list(range(1000))


async def test_last_page_has_no_next(client):
    body = await (await client.get("/items?page=4&per_page=300")).json()
    assert body["items"] == list(range(900, 1000)) and body["next"] is None


async def test_page_past_the_end_is_empty(client):
    body = await (await client.get("/items?page=11&per_page=100")).json()
    assert body["items"] == [] and body["next"] is None and body["total"] == 1000


async def test_per_page_alone_starts_at_page_one(client):
    body = await (await client.get("/items?per_page=5")).json()
    assert body["items"] == [0, 1, 2, 3, 4] and body["page"] == 1


async def test_exact_fit_last_page_has_no_next(client):
    body = await (await client.get("/items?page=10&per_page=100")).json()
    assert body["items"][-1] == 999 and body["next"] is None


@pytest.mark.parametrize(
    "query, field",
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=", "page"),
        ("page=1000000001", "page"),
        ("page=99999999999999999999999", "page"),
        ("page=1&per_page=0", "per_page"),
        ("page=1&per_page=1001", "per_page"),
        ("page=1&per_page=-5", "per_page"),
        ("page=1&per_page=x", "per_page"),
    ],
)
async def test_bad_page_or_per_page_is_400_naming_it(client, query, field):
    response = await client.get(f"/items?{query}")
    assert response.status == 400
    assert (await response.json())["error"].startswith(f"{field} must be")
    assert (await client.get("/items/3")).status == 200  # still serving


async def test_largest_page_size_is_accepted(client):
    body = await (await client.get("/items?page=1&per_page=1000")).json()
    assert body["items"] == list(range(1000)) and body["next"] is None


# -- control routes ------------------------------------------------------------


async def test_info_describes_the_server(make_client):
    client = await make_client(items=12, seed=3)
    body = await (await client.get("/_info")).json()
    assert body["server"] == "mockapi" and body["items"] == 12 and body["seed"] == 3
    assert isinstance(body["pid"], int) and body["version"]


async def test_control_routes_are_not_counted(client):
    for path in ["/_info", "/_scenario", "/_stats"]:
        assert (await client.get(path)).status == 200
    await client.get("/")
    stats = await (await client.get("/_stats")).json()
    assert stats["requests"] == 1 and stats["by_status"] == {"200": 1}


async def test_reset_answers_ok(client):
    response = await client.post("/_reset")
    assert response.status == 200 and await response.json() == {"ok": True}


async def test_unknown_control_route_is_404_json_and_not_counted(client):
    response = await client.get("/_nope")
    assert response.status == 404 and "/_stats" in (await response.json())["error"]
    assert (await (await client.get("/_stats")).json())["requests"] == 0


async def test_wrong_method_on_a_control_route_is_405(client):
    response = await client.delete("/_scenario")
    assert response.status == 405
    assert {"GET", "PUT"} <= set(response.headers["Allow"].split(", "))


def test_warm_and_lazy_emails_are_the_same():
    from server.mockapi.emails import EmailBook

    warm, lazy = EmailBook(seed=4), EmailBook(seed=4)
    warm.warm(30)
    assert [lazy.body(i) for i in reversed(range(30))] == [warm.body(i) for i in reversed(range(30))]
