"""course.timeline (the lesson 06/07 helpers) reads the real mock API's record correctly."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from course.timeline import (
    achieved_rate,
    exactly_once,
    plot_timeline,
    read_stats,
    timeline,
    use_scenario,
)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_use_scenario_installs_it_and_clears_the_counters(mock_api) -> None:
    _get(mock_api.url + "/items/1")
    installed = use_scenario(mock_api.url, {"rate_limit": {"requests": 2, "per": 10.0}})
    assert installed["rate_limit"] == {"requests": 2, "per": 10.0, "headers": False}
    assert read_stats(mock_api.url)["requests"] == 0
    assert [_get(mock_api.url + f"/items/{i}") for i in range(3)] == [200, 200, 429]


def test_exactly_once_names_missing_repeated_and_unexpected_items(mock_api) -> None:
    for item in (0, 1, 1, 2, 7):
        assert _get(mock_api.url + f"/items/{item}") == 200
    check = exactly_once(read_stats(mock_api.url), range(4))
    assert (check.expected, check.served) == (4, 3)
    assert check.missing == (3,) and check.repeated == (1,) and check.unexpected == ("7",)
    assert not check.ok
    assert exactly_once(read_stats(mock_api.url), [0, 2, 7]).unexpected == ("1",)
    use_scenario(mock_api.url)
    for item in (4, 5):
        _get(mock_api.url + f"/items/{item}")
    assert exactly_once(read_stats(mock_api.url), [4, 5]).ok is True


def test_timeline_counts_every_arrival_by_status_and_bin(mock_api) -> None:
    use_scenario(mock_api.url, {"rate_limit": {"requests": 3, "per": 10.0}})
    for item in range(5):
        _get(mock_api.url + f"/items/{item}")
    time.sleep(0.12)
    _get(mock_api.url + "/items/9")
    frame = timeline(read_stats(mock_api.url), step=0.05)
    assert frame.to_dict("list").keys() == {"200", "429"}
    assert frame["200"].sum() == 3 and frame["429"].sum() == 3
    assert frame.iloc[-1].sum() == 1 and len(frame) >= 3  # the last request, after a gap
    assert list(frame.index[:2]) == [0.0, 0.05]
    fig, ax = plt.subplots()
    plot_timeline(frame, ax, title="t", limit=0.3, step=0.05)
    assert ax.get_title() == "t" and len(ax.patches) == int((frame > 0).sum().sum())  # one bar per non-empty cell
    plt.close(fig)


def test_achieved_rate_uses_only_admitted_arrivals() -> None:
    stats = {
        "arrivals": [0.0, 0.1, 0.15, 0.2, 0.5, 1.0],
        "statuses": ["200", "429", "429", "200", "503", "200"],
    }
    assert achieved_rate(stats) == pytest.approx(2.0)  # 3 admitted over 1 s
    assert achieved_rate(stats, status="429") == pytest.approx(20.0)
    assert achieved_rate({"arrivals": [0.3], "statuses": ["200"]}) == 0.0


def test_helpers_say_when_the_stats_lack_detail(mock_api) -> None:
    summary = read_stats(mock_api.url, detail=False)
    with pytest.raises(ValueError, match="detail=True"):
        achieved_rate(summary)
    with pytest.raises(ValueError, match="detail=True"):
        exactly_once(summary, range(3))
