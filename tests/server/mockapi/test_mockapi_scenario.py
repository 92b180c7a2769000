"""Scenario JSON: defaults, normalization, and 400s that name the bad field."""

from __future__ import annotations

import pytest

from server.mockapi import Scenario, ScenarioError

FULL = {
    "rate_limit": {"requests": 100, "per": 1.0, "headers": False},
    "outages": [{"start": 2.0, "duration": 1.5, "retry_after": 1}],
    "outage_every": {"period": 10.0, "duration": 1.0, "retry_after": None, "start": 10.0},
    "error_rate": 0.1,
    "drop_rate": 0.05,
    "latency": {"mean": 0.01, "jitter": 0.005},
    "seed": 42,
}


def test_empty_scenario_is_the_quiet_default():
    scenario = Scenario.from_json({})
    assert scenario == Scenario() and scenario.is_quiet
    assert scenario.to_json() == {
        "rate_limit": None,
        "outages": [],
        "outage_every": None,
        "error_rate": 0.0,
        "drop_rate": 0.0,
        "latency": {"mean": 0.0, "jitter": 0.0},
        "seed": 0,
    }


def test_full_scenario_round_trips():
    assert Scenario.from_json(FULL).to_json() == FULL
    assert Scenario.from_json(Scenario.from_json(FULL).to_json()) == Scenario.from_json(FULL)


def test_missing_optional_keys_are_filled_in():
    normal = Scenario.from_json({"rate_limit": {"requests": 5}, "outage_every": {"period": 4, "duration": 1}}).to_json()
    assert normal["rate_limit"] == {"requests": 5, "per": 1.0, "headers": False}
    assert normal["outage_every"] == {"period": 4.0, "duration": 1.0, "retry_after": None, "start": 4.0}


@pytest.mark.parametrize(
    "data, field",
    [
        ([], "scenario must be a JSON object"),
        ({"bogus": 1}, "unknown key(s) ['bogus']"),
        ({"rate_limit": {"requests": 0}}, "rate_limit.requests"),
        ({"rate_limit": {"requests": 1.5}}, "rate_limit.requests"),
        ({"rate_limit": {"requests": True}}, "rate_limit.requests"),
        ({"rate_limit": {"per": 1}}, "rate_limit.requests is required"),
        ({"rate_limit": {"requests": 5, "per": 0}}, "rate_limit.per"),
        ({"rate_limit": {"requests": 5, "window": 1}}, "rate_limit has unknown key(s) ['window']"),
        ({"rate_limit": 5}, "rate_limit must be a JSON object"),
        ({"outages": {"start": 1}}, "outages must be a list"),
        ({"outages": [{"start": 1}]}, "outages[0].duration is required"),
        ({"outages": [{"start": -1, "duration": 1}]}, "outages[0].start"),
        ({"outages": [{"start": 0, "duration": 1}, {"start": 1, "duration": 0}]}, "outages[1].duration"),
        ({"outages": [{"start": 0, "duration": 1, "retry_after": 0}]}, "outages[0].retry_after"),
        ({"outage_every": {"period": 1, "duration": 1}}, "outage_every.duration must be shorter"),
        ({"outage_every": {"duration": 1}}, "outage_every.period is required"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_rate": "0.1"}, "error_rate must be a number"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"latency": {"mean": -1}}, "latency.mean"),
        ({"latency": {"mean": 20, "jitter": 20}}, "latency.mean + latency.jitter"),
        ({"latency": {"sd": 1}}, "latency has unknown key(s) ['sd']"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"seed": -3}, "seed must be >= 0"),
    ],
)
def test_malformed_scenario_names_the_field(data, field):
    with pytest.raises(ScenarioError) as info:
        Scenario.from_json(data)
    assert field in str(info.value)


def test_outage_at_covers_one_off_windows():
    scenario = Scenario.from_json({"outages": [{"start": 2.0, "duration": 1.5}]})
    assert scenario.outage_at(1.999) is None
    assert scenario.outage_at(2.0) == (1.5, None)
    assert scenario.outage_at(3.0) == (0.5, None)
    assert scenario.outage_at(3.5) is None


def test_repeating_outage_starts_after_one_period_by_default():
    scenario = Scenario.from_json({"outage_every": {"period": 10.0, "duration": 1.0, "retry_after": 2}})
    assert scenario.outage_at(0.0) is None and scenario.outage_at(9.99) is None
    assert scenario.outage_at(10.25) == (0.75, 2)
    assert scenario.outage_at(11.0) is None
    assert scenario.outage_at(30.5) == (0.5, 2)


def test_repeating_outage_can_start_at_zero():
    scenario = Scenario.from_json({"outage_every": {"period": 4.0, "duration": 1.0, "start": 0}})
    assert [scenario.outage_at(t) is not None for t in (0.0, 0.5, 1.5, 4.2, 6.0)] == [True, True, False, True, False]


# -- over HTTP ---------------------------------------------------------------


async def test_put_scenario_returns_it_normalized_and_get_shows_it(client):
    response = await client.put("/_scenario", json={"error_rate": 0.25, "seed": 9})
    assert response.status == 200
    expected = Scenario.from_json({"error_rate": 0.25, "seed": 9}).to_json()
    assert await response.json() == expected
    assert await (await client.get("/_scenario")).json() == expected


@pytest.mark.parametrize(
    "body, words",
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"error_rate": 2}', "error_rate must be"),
        ('{"rate_limit": {"requests": -1}}', "rate_limit.requests"),
        ('{"latency": 0.5}', "latency must be a JSON object"),
        ('{"surprise": true}', "unknown key"),
    ],
)
async def test_bad_scenario_is_400_and_the_old_one_stays(client, body, words):
    await client.put("/_scenario", json={"seed": 5})
    response = await client.put("/_scenario", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert words in (await response.json())["error"]
    assert (await (await client.get("/_scenario")).json())["seed"] == 5
    assert (await client.get("/items/1")).status == 200


async def test_starting_scenario_comes_from_the_config(make_client):
    client = await make_client(scenario={"error_rate": 1.0})
    assert (await (await client.get("/_scenario")).json())["error_rate"] == 1.0
    assert (await client.get("/items/1")).status == 500
