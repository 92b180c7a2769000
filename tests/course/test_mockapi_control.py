"""course.mockapi_control steers a real mock API: scenario, reset, stats, and a refusal explained."""

from __future__ import annotations

import urllib.error
import urllib.request

import aiohttp
import pytest

from course.mockapi_control import AsyncMockAPIControl, ControlError, MockAPIControl, call_json


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_set_scenario_keeps_the_counters_and_reset_clears_them(mock_api) -> None:
    control = MockAPIControl(mock_api.url + "/")  # a trailing slash is fine
    assert _status(mock_api.url + "/items/1") == 200
    installed = control.set_scenario({"error_rate": 1.0, "seed": 3})
    assert installed["error_rate"] == 1.0 and installed["seed"] == 3
    assert "rate_limit" in installed, "the answer is the normalized scenario, every key present"
    assert control.stats()["requests"] == 1
    assert _status(mock_api.url + "/items/1") == 500
    control.reset()
    assert control.stats()["requests"] == 0


def test_use_installs_then_resets_and_stats_detail_lists_arrivals(mock_api) -> None:
    control = MockAPIControl(mock_api.url)
    assert _status(mock_api.url + "/items/1") == 200
    installed = control.use({"rate_limit": {"requests": 1, "per": 60.0}})
    assert installed["rate_limit"] == {"requests": 1, "per": 60.0, "headers": False}
    assert control.stats()["requests"] == 0
    assert [_status(mock_api.url + f"/items/{i}") for i in (1, 2)] == [200, 429]
    summary, detail = control.stats(), control.stats(detail=True)
    assert "arrivals" not in summary
    assert detail["statuses"] == ["200", "429"] and len(detail["arrivals"]) == 2
    assert control.use()["rate_limit"] is None  # None: back to no faults


def test_a_refused_scenario_is_a_control_error_saying_what_the_server_answered(mock_api) -> None:
    control = MockAPIControl(mock_api.url)
    control.use({"seed": 5})
    with pytest.raises(ControlError, match="error_rate") as info:
        control.set_scenario({"error_rate": 7})
    assert info.value.status == 400
    assert "PUT " + mock_api.url + "/_scenario answered 400" in str(info.value)
    assert control.set_scenario({"seed": 5})["seed"] == 5  # the old scenario stayed


def test_call_json_returns_the_answer_and_explains_a_refusal(mock_api) -> None:
    assert call_json("GET", mock_api.url + "/_stats")["requests"] == 0
    with pytest.raises(ControlError) as info:
        call_json("GET", mock_api.url + "/_nothing")
    assert info.value.status == 404 and "/_stats" in info.value.detail


async def test_the_async_control_does_the_same_over_a_session(mock_api) -> None:
    async with aiohttp.ClientSession() as session:
        control = AsyncMockAPIControl(mock_api.url, session)
        async with session.get(mock_api.url + "/items/3") as response:
            assert response.status == 200
        assert (await control.stats())["requests"] == 1
        installed = await control.use({"error_rate": 1.0})
        assert installed["error_rate"] == 1.0
        assert (await control.stats(detail=True))["arrivals"] == []
        assert (await control.set_scenario(None))["error_rate"] == 0.0
        await control.reset()
        with pytest.raises(ControlError, match="error_rate") as info:
            await control.set_scenario({"error_rate": -1})
        assert info.value.status == 400
        assert not session.closed, "the caller's session is left open"
