"""Hostile input to every route: each answer is a 4xx in JSON that names the problem, never a 500.

Valid inputs keep their old answers (the other test files pin those down).
"""

from __future__ import annotations

import json

import pytest

from server.mockapi import MockConfig, Scenario, ScenarioError
from server.mockapi.app import MAX_ITEMS
from server.mockapi.scenario import MAX_SCENARIO_BYTES


async def _error(response, status: int) -> str:
    """Assert a JSON error answer with ``status``; return its message."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    message = (await response.json())["error"]
    assert isinstance(message, str) and "\n" not in message
    return message


async def _put(client, body: str | bytes, content_type: str = "application/json"):
    return await client.put("/_scenario", data=body, headers={"Content-Type": content_type})


# -- item ids and query parameters ------------------------------------------------


@pytest.mark.parametrize("digits", [4300, 4301, 5000, 8000])
async def test_an_id_of_thousands_of_digits_is_404_with_a_short_message(client, digits):
    message = await _error(await client.get("/items/" + "9" * digits), 404)
    assert "0 to 999" in message and len(message) < 300


@pytest.mark.parametrize("name", ["page", "per_page"])
async def test_a_page_parameter_of_thousands_of_digits_is_400_naming_it(client, name):
    message = await _error(await client.get(f"/items?{name}=" + "9" * 5000), 400)
    assert message.startswith(f"{name} must be a whole number") and len(message) < 300


@pytest.mark.parametrize(
    "query, words",
    [
        ("pagesize=5", "Unknown query parameter 'pagesize'"),
        ("page=1&foo=bar", "Unknown query parameter 'foo'"),
        ("page=1&page=2", "page is given 2 times"),
        ("per_page=5&per_page=5", "per_page is given 2 times"),
        ("x" * 5000 + "=1", "Unknown query parameter"),
    ],
)
async def test_an_unknown_or_repeated_items_parameter_is_400_naming_it(client, query, words):
    message = await _error(await client.get(f"/items?{query}"), 400)
    assert words in message and len(message) < 300


async def test_an_id_on_a_server_without_items_says_there_are_none(make_client):
    empty = await make_client(items=0)
    assert await (await empty.get("/items")).json() == []
    assert "no items" in await _error(await empty.get("/items/0"), 404)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_long_unknown_path_is_cut_short_in_the_error_message(client, method):
    message = await _error(await client.request(method, "/" + "x" * 8000), 404)
    assert "(8001 characters)" in message and len(message) < 400


def test_the_number_of_items_is_capped():
    assert MockConfig(items=MAX_ITEMS, warm_items=0).items == MAX_ITEMS
    with pytest.raises(ValueError, match="items must be from 0 to 1000000"):
        MockConfig(items=MAX_ITEMS + 1)


@pytest.mark.parametrize("query", ["detail=maybe", "detail=" + "1" * 5000, "detail=1&detail=0", "verbose=1"])
async def test_stats_refuses_an_unknown_detail_value_or_parameter(client, query):
    message = await _error(await client.get(f"/_stats?{query}"), 400)
    assert "detail" in message and len(message) < 300


@pytest.mark.parametrize(
    "query, detailed",
    [
        ("detail=1", True),
        ("detail=TRUE", True),
        ("detail=yes", True),
        ("detail=no", False),
        ("detail=", False),
        ("", False),
    ],
)
async def test_stats_accepts_the_documented_detail_values(client, query, detailed):
    response = await client.get(f"/_stats?{query}")
    assert response.status == 200
    assert ("arrivals" in await response.json()) is detailed


# -- PUT /_scenario: the body as text ------------------------------------------------


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
async def test_a_deeply_nested_body_is_400_and_the_old_scenario_stays(client, depth):
    await client.put("/_scenario", json={"seed": 5})
    for body in ["[" * depth + "]" * depth, '{"latency": ' + '{"a": ' * depth + "0" + "}" * depth + "}"]:
        message = await _error(await _put(client, body), 400)
        assert "more than 32 levels deep" in message
    assert (await (await client.get("/_scenario")).json())["seed"] == 5


async def test_brackets_inside_strings_do_not_count_as_nesting(client):
    message = await _error(await _put(client, json.dumps({"[" * 1000: 1})), 400)
    assert "unknown key" in message


async def test_a_body_that_is_not_utf8_is_400(client):
    message = await _error(await _put(client, b'{"seed": 1, "x": "\xff\xfe"}'), 400)
    assert "not UTF-8" in message


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=bogus",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
    ],
)
async def test_any_content_type_is_read_as_utf8_json(client, content_type):
    response = await _put(client, '{"seed": 6}', content_type)
    assert response.status == 200, await response.text()
    assert (await response.json())["seed"] == 6


async def test_a_body_over_the_limit_is_413_in_json(client):
    message = await _error(await _put(client, b" " * (MAX_SCENARIO_BYTES + 1)), 413)
    assert str(MAX_SCENARIO_BYTES) in message


async def test_a_413_closes_the_connection_whose_body_it_did_not_read(client):
    response = await client.put("/_scenario", data=b"{}", headers={"Content-Length": str(MAX_SCENARIO_BYTES * 5)})
    await _error(response, 413)
    assert response.headers["Connection"].lower() == "close"
    assert (await client.get("/items/1")).status == 200  # a new connection serves as usual


async def test_a_chunked_body_over_the_limit_is_413_in_json(client):
    async def chunks():
        for _ in range(3):
            yield b" " * (MAX_SCENARIO_BYTES // 2)

    response = await client.put("/_scenario", data=chunks(), headers={"Content-Type": "application/json"})
    assert str(MAX_SCENARIO_BYTES) in await _error(response, 413)


async def test_a_body_at_the_limit_is_read(client):
    body = '{"seed": 4}'.ljust(MAX_SCENARIO_BYTES)
    response = await _put(client, body)
    assert response.status == 200 and (await response.json())["seed"] == 4


@pytest.mark.parametrize(
    "body, words",
    [
        ('{"seed": ' + "9" * 5000 + "}", "seed must be an integer from 0 to"),
        ('{"rate_limit": {"requests": ' + "9" * 5000 + "}}", "rate_limit.requests must be an integer"),
        ('{"error_rate": ' + "9" * 5000 + "}", "error_rate must be a number, not a 5000-digit number"),
        ('{"error_rate": NaN}', "NaN is not a JSON number"),
        ('{"latency": {"mean": Infinity}}', "Infinity is not a JSON number"),
        ('{"outages": [{"start": -Infinity, "duration": 1}]}', "-Infinity is not a JSON number"),
        ('{"seed": 1, "seed": 2}', "the key 'seed' twice"),
        ('{"latency": {"mean": 0.1, "mean": 0.2}}', "the key 'mean' twice"),
        ("", "not valid JSON"),
        ("\ufeff{}", "not valid JSON"),
    ],
)
async def test_a_body_that_is_no_usable_json_is_400_naming_the_problem(client, body, words):
    message = await _error(await _put(client, body), 400)
    assert words in message and len(message) < 300


# -- PUT /_scenario: every field -------------------------------------------------------


@pytest.mark.parametrize(
    "scenario, words",
    [
        ({"latency": []}, "latency must be a JSON object, not an array"),
        ({"latency": 0}, "latency must be a JSON object, not a number"),
        ({"latency": False}, "latency must be a JSON object, not a boolean"),
        ({"latency": ""}, "latency must be a JSON object, not a string"),
        ({"outages": [{"start": 0, "duration": 1, "retry_after": 86_401}]}, "outages[0].retry_after must be <= 86400"),
        ({"outage_every": {"period": 10, "duration": 1, "retry_after": 10**30}}, "outage_every.retry_after must be <="),
        ({"outages": [{"start": 0, "duration": 1, "retry_after": 1.5}]}, "outages[0].retry_after must be an integer"),
        ({"rate_limit": {"requests": 1_000_001}}, "rate_limit.requests must be <= 1000000"),
        ({"seed": 2**63}, "seed must be <= 9223372036854775807"),
        ({"seed": 1e20}, "seed must be an integer"),
        ({"outages": [{"start": i, "duration": 0.5} for i in range(1001)]}, "outages has 1001 windows; at most 1000"),
        ({"outages": None}, "outages must be a list"),
        ({"outage_every": {"period": 10, "duration": 1, "start": 86_401}}, "outage_every.start must be"),
        ({"rate_limit": {"requests": 1, "per": 86_401}}, "rate_limit.per must be"),
        ({"latency": {"jitter": 31}}, "latency.jitter must be"),
    ],
)
async def test_a_field_out_of_range_or_of_the_wrong_type_is_400_naming_it(client, scenario, words):
    await client.put("/_scenario", json={"seed": 5})
    message = await _error(await client.put("/_scenario", json=scenario), 400)
    assert words in message and len(message) < 400
    assert (await (await client.get("/_scenario")).json())["seed"] == 5


@pytest.mark.parametrize(
    "scenario",
    [
        {"outages": [{"start": 0, "duration": 1, "retry_after": 86_400}]},
        {"rate_limit": {"requests": 1_000_000, "per": 86_400}},
        {"seed": 2**63 - 1},
        {"outages": [{"start": i, "duration": 0.5} for i in range(1000)]},
        {"latency": None, "rate_limit": None, "outage_every": None},
        {"latency": {"mean": 15, "jitter": 15}},
    ],
)
async def test_the_largest_allowed_values_are_accepted(client, scenario):
    response = await client.put("/_scenario", json=scenario)
    assert response.status == 200, await response.text()
    assert await response.json() == Scenario.from_json(scenario).to_json()


@pytest.mark.parametrize(
    "scenario",
    [
        {"error_rate": "x" * 100_000},
        {"latency": {"mean": list(range(10_000))}},
        {f"key{i}": i for i in range(1000)},
        {"k" * 100_000: 1},
    ],
)
async def test_a_huge_value_is_cut_short_in_the_error_message(client, scenario):
    message = await _error(await client.put("/_scenario", json=scenario), 400)
    assert len(message) < 400


def test_the_scenario_text_reader_refuses_what_the_route_refuses():
    assert Scenario.from_text(b'{"error_rate": 0.5}') == Scenario(error_rate=0.5)
    for text in ["[" * 100_000, '{"seed": ' + "1" * 5000 + "}", "NaN", '{"a": 1, "a": 1}', b"\xff"]:
        with pytest.raises(ScenarioError):
            Scenario.from_text(text)


# -- the same over a real socket, against the real process ----------------------------


async def test_the_live_server_answers_hostile_input_in_json(api):
    for path, status in [("/items/" + "9" * 5000, 404), ("/items?page=" + "9" * 5000, 400), ("/items?x=1", 400)]:
        async with api.session.get(path) as response:
            await _error(response, status)
    capless = '{"outages": [{"start": 0, "duration": 1, "retry_after": 1000000000}]}'
    bodies = ["[" * 100_000 + "]" * 100_000, b"\xff\xfe", capless]
    for body in bodies:
        async with api.session.put("/_scenario", data=body) as response:
            await _error(response, 400)
    async with api.session.get("/items/1") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "data, words",
    [
        ({"seed": 10**5000}, "seed must be <="),
        ({"error_rate": 10**400}, "error_rate must be >= 0 and <= 1"),
        ({"latency": {"mean": -(10**400)}}, "latency.mean must be >= 0"),
        ({"rate_limit": {"requests": 10**5000}}, "rate_limit.requests must be <="),
        ({"drop_rate": float("nan")}, "drop_rate must be a number"),
    ],
)
def test_from_json_refuses_python_numbers_too_large_for_json_by_name(data, words):
    with pytest.raises(ScenarioError, match=words) as info:
        Scenario.from_json(data)
    assert len(str(info.value)) < 200
