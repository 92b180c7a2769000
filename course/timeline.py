"""What the mock API saw, as figures, tables and plots (lessons 06 and 07, and ``course.compare``).

The mock API records every public request (``GET /_stats?detail=1``): when it
arrived and how it ended. These helpers turn that record into the figures the
lessons talk about:

- ``use_scenario(url, scenario)`` installs a scenario and clears the counters
  (the scenario clock starts now); ``read_stats(url, detail=True)`` reads the
  record (both through ``course.mockapi_control.MockAPIControl``);
- ``achieved_rate(stats)`` is the rate of *admitted* (200) requests, from the
  server's own arrival times;
- ``timeline(stats, step)`` counts arrivals per time bin and status, and
  ``plot_timeline(frame, ax)`` draws it as stacked bars;
- ``exactly_once(stats, items)`` says which items were served never, or more
  than once.

    >>> use_scenario(api.url, {"rate_limit": {"requests": 100}})
    >>> ...  # run a client
    >>> stats = read_stats(api.url)
    >>> achieved_rate(stats), exactly_once(stats, range(300)).ok

pandas is imported by ``timeline`` and ``plot_timeline`` only, so the
benchmark harness can use ``achieved_rate`` without loading it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from course.mockapi_control import MockAPIControl

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STATUS_COLOURS",
    "ExactlyOnce",
    "achieved_rate",
    "exactly_once",
    "plot_timeline",
    "read_stats",
    "require_arrivals",
    "timeline",
    "use_scenario",
]

#: One colour per outcome, the same in every plot of the course.
STATUS_COLOURS = {
    "200": "tab:green",
    "429": "tab:orange",
    "500": "tab:purple",
    "503": "tab:red",
    "dropped": "black",
    "404": "tab:brown",
}


def use_scenario(base_url: str, scenario: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Install ``scenario`` (``None``: no faults), clear the counters; returns it normalized."""
    return MockAPIControl(base_url).use(scenario)


def read_stats(base_url: str, *, detail: bool = True) -> dict[str, Any]:
    """``GET /_stats`` (with every arrival and per-item counts when ``detail``)."""
    return MockAPIControl(base_url).stats(detail=detail)


def require_arrivals(stats: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``stats`` has every arrival (``GET /_stats?detail=1``)."""
    if "arrivals" not in stats:
        raise ValueError(
            "these stats have no arrivals: read them with GET /_stats?detail=1 "
            "(read_stats(url, detail=True) in the lessons)"
        )


def achieved_rate(stats: Mapping[str, Any], status: str = "200") -> float:
    """Admitted requests per second between the first and the last one the server admitted.

    ``(n - 1) / (last - first)`` over the arrivals that ended with ``status``:
    the rate the server actually experienced, free of the client's start-up
    and shut-down. 0.0 when fewer than two such arrivals exist.
    """
    require_arrivals(stats)
    times = [t for t, s in zip(stats["arrivals"], stats["statuses"], strict=True) if s == status]
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def timeline(stats: Mapping[str, Any], step: float = 0.1) -> pd.DataFrame:
    """Arrivals per ``step``-second bin (rows: bin start) and outcome (columns).

    Every bin from 0 to the last arrival is present (empty bins are zeros),
    so gaps in the traffic show as gaps in the plot.
    """
    import pandas as pd

    require_arrivals(stats)
    if step <= 0:
        raise ValueError(f"step must be a positive number of seconds, got {step}")
    arrivals, statuses = stats["arrivals"], stats["statuses"]
    bins = math.floor(max(arrivals, default=0.0) / step) + 1
    frame = pd.DataFrame(
        {"bin": [int(t / step) for t in arrivals], "status": list(statuses)}
    )
    table = frame.groupby(["bin", "status"]).size().unstack(fill_value=0) if len(frame) else pd.DataFrame()
    table = table.reindex(range(bins), fill_value=0)
    known = [s for s in STATUS_COLOURS if s in table.columns]
    table = table[known + sorted(c for c in table.columns if c not in STATUS_COLOURS)]
    table.index = pd.Index([round(b * step, 6) for b in range(bins)], name="second")
    table.columns.name = "status"
    return table.astype(int)


def plot_timeline(
    frame: pd.DataFrame,
    ax: Any,
    *,
    title: str = "",
    limit: float | None = None,
    step: float | None = None,
) -> Any:
    """Stacked bars of ``timeline(...)``; ``limit`` (requests per second) is drawn as a line.

    With ``step`` the bars are scaled to requests *per second*, so bins of any
    width compare with the limit.
    """
    import pandas as pd

    scale = 1.0 / step if step else 1.0
    width = (frame.index[1] - frame.index[0]) if len(frame.index) > 1 else 1.0
    bottom = pd.Series(0.0, index=frame.index)
    for status in frame.columns:
        values = frame[status] * scale
        drawn = values > 0  # empty bins need no rectangle (quicker to draw)
        ax.bar(
            frame.index[drawn],
            values[drawn],
            width=width,
            bottom=bottom[drawn],
            align="edge",
            color=STATUS_COLOURS.get(status, "tab:gray"),
            label=status,
        )
        bottom = bottom + values
    if limit is not None:
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"limit {limit:g}/s")
    ax.set_xlabel("seconds since the scenario started")
    ax.set_ylabel("requests per second" if step else "requests")
    if title:
        ax.set_title(title)
    ax.legend(title="status", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return ax


@dataclass(frozen=True)
class ExactlyOnce:
    """Which expected items the server served never (``missing``) or more than once (``repeated``)."""

    expected: int
    served: int
    missing: tuple[Any, ...]
    repeated: tuple[Any, ...]
    unexpected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.repeated or self.unexpected)

    def __str__(self) -> str:
        return (
            f"{self.served} of {self.expected} items served; missing {len(self.missing)}, "
            f"served twice or more {len(self.repeated)}, not asked for {len(self.unexpected)}"
        )


def exactly_once(stats: Mapping[str, Any], items: Iterable[int]) -> ExactlyOnce:
    """Compare the server's per-item 200 counts with the items a client was given."""
    if "served" not in stats:
        raise ValueError("these stats have no per-item counts: read them with read_stats(url, detail=True)")
    served: dict[str, int] = stats["served"]
    expected = [str(item) for item in items]
    wanted = set(expected)
    return ExactlyOnce(
        expected=len(expected),
        served=sum(1 for key in expected if served.get(key, 0) >= 1),
        missing=tuple(int(k) for k in expected if served.get(k, 0) == 0),
        repeated=tuple(int(k) for k in expected if served.get(k, 0) > 1),
        unexpected=tuple(sorted(k for k in served if k not in wanted)),
    )
