"""The scenario's ``rate_limit.headers``: the limit announced in the IETF draft's RateLimit headers."""

from __future__ import annotations

import re

import pytest

from course.aimd import parse_rate_limit_headers
from server.mockapi import Scenario
from server.mockapi.scenario import ScenarioError


async def test_admitted_and_refused_answers_announce_the_policy_and_what_is_left(make_client) -> None:
    client = await make_client(scenario={"rate_limit": {"requests": 3, "per": 2, "headers": True}})
    answers = [await client.get("/items/1") for _ in range(4)]
    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    assert all(answer.headers["RateLimit-Policy"] == '"default";q=3;w=2' for answer in answers)
    remaining = [re.fullmatch(r'"default";r=(\d+);t=(\d+)', answer.headers["RateLimit"]) for answer in answers]
    assert all(remaining)
    assert [int(match[1]) for match in remaining if match] == [2, 1, 0, 0]
    # t: whole seconds until the oldest admission leaves the 2 s window, rounded up.
    assert all(1 <= int(match[2]) <= 2 for match in remaining if match)
    announced = parse_rate_limit_headers(answers[-1].headers)
    assert announced is not None and (announced.quota, announced.window, announced.remaining) == (3, 2.0, 0)


async def test_without_the_option_the_limit_is_unannounced(make_client) -> None:
    client = await make_client(scenario={"rate_limit": {"requests": 3, "per": 1}})
    answer = await client.get("/items/1")
    assert answer.status == 200
    assert "RateLimit-Policy" not in answer.headers and "RateLimit" not in answer.headers


async def test_the_option_is_shown_and_set_through_the_control_route(client) -> None:
    put = await client.put("/_scenario", json={"rate_limit": {"requests": 10, "headers": True}})
    assert put.status == 200
    shown = await (await client.get("/_scenario")).json()
    assert shown["rate_limit"] == {"requests": 10, "per": 1.0, "headers": True}
    answer = await client.get("/items/2")
    assert answer.headers["RateLimit-Policy"] == '"default";q=10;w=1'


@pytest.mark.parametrize(
    "rate_limit, message",
    [
        ({"requests": 5, "headers": "yes"}, "rate_limit.headers must be true or false"),
        ({"requests": 5, "headers": 1}, "rate_limit.headers must be true or false"),
        ({"requests": 5, "per": 0.5, "headers": True}, "whole number of seconds"),
    ],
)
def test_a_bad_headers_option_is_refused_naming_the_field(rate_limit, message) -> None:
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_json({"rate_limit": rate_limit})


async def test_a_bad_headers_option_is_a_400_and_the_scenario_stays(client) -> None:
    put = await client.put("/_scenario", json={"rate_limit": {"requests": 5, "headers": "true"}})
    assert put.status == 400 and "rate_limit.headers" in (await put.json())["error"]
    assert (await (await client.get("/_scenario")).json())["rate_limit"] is None
