"""What the mock API saw: arrivals, answers, concurrency and items served.

Recording a request costs two list appends on arrival and one assignment plus
one counter increment on completion; everything else (per-second buckets,
distinct items) is computed when ``GET /_stats`` asks for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["DROPPED", "PENDING", "Stats"]

#: Status label of a request whose connection was closed without an answer.
DROPPED = "dropped"
#: Status label of a request still being answered.
PENDING = "pending"


class Stats:
    """Counters since ``started`` (a ``time.monotonic()`` value)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.arrivals: list[float] = []
        self.statuses: list[str] = []
        self.by_status: Counter[str] = Counter()
        self.served: Counter[int] = Counter()
        self.in_flight = 0
        self.peak_concurrency = 0

    def arrive(self, now: float) -> int:
        """Record an arrival; returns its index for :meth:`finish`."""
        self.arrivals.append(now - self.started)
        self.statuses.append(PENDING)
        self.in_flight += 1
        if self.in_flight > self.peak_concurrency:
            self.peak_concurrency = self.in_flight
        return len(self.arrivals) - 1

    def finish(self, index: int, status: str) -> None:
        """Record how the request at ``index`` ended (``"200"``, ``"429"``, ``DROPPED``...)."""
        self.statuses[index] = status
        self.by_status[status] += 1
        self.in_flight -= 1

    def item_served(self, item_id: int) -> None:
        self.served[item_id] += 1

    def snapshot(self, now: float, *, detail: bool = False) -> dict[str, Any]:
        """The JSON of ``GET /_stats`` (``detail`` adds every arrival and per-item counts)."""
        elapsed = now - self.started
        seconds = int(elapsed) + 1
        buckets: list[Counter[str]] = [Counter() for _ in range(seconds)]
        for arrival, status in zip(self.arrivals, self.statuses, strict=True):
            buckets[min(int(arrival), seconds - 1)][status] += 1
        result: dict[str, Any] = {
            "elapsed": round(elapsed, 6),
            "requests": len(self.arrivals),
            "by_status": dict(sorted(self.by_status.items())),
            "per_second": [
                {"second": i, "requests": sum(b.values()), "by_status": dict(sorted(b.items()))}
                for i, b in enumerate(buckets)
            ],
            "peak_concurrency": self.peak_concurrency,
            "in_flight": self.in_flight,
            "items": {
                "served": len(self.served),
                "responses": sum(self.served.values()),
                "max_per_item": max(self.served.values(), default=0),
            },
        }
        if detail:
            result["arrivals"] = [round(a, 6) for a in self.arrivals]
            result["statuses"] = list(self.statuses)
            result["served"] = {str(k): v for k, v in sorted(self.served.items())}
        return result
