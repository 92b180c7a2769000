"""The records the client framework passes around: a request, a response, an outcome, a report.

Every item given to a worker pool ends as exactly one ``Result`` (it was
fetched) or one ``Failure`` (it could not be, and here is the last error);
a run's ``RunReport`` gathers them, with each stage's statistics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from course.stats import StatsSnapshot

__all__ = ["Failure", "Outcome", "Request", "Response", "Result", "RunReport"]


@dataclass(slots=True)
class Request:
    """What to send for one item (made by a request builder)."""

    url: str
    method: str = "GET"
    params: Mapping[str, str] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None


@dataclass(slots=True)
class Response:
    """A response whose body was read inside the connection's context."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(slots=True)
class Result:
    """An item fetched: its final status, the unpacked data, how many attempts."""

    item: Any
    status: int
    data: Any
    attempts: int = 1
    stage: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item, "status": self.status, "data": self.data}


@dataclass(slots=True)
class Failure:
    """An item given up on after its retry budget: the last error says why."""

    item: Any
    error: str
    status: int | None = None
    attempts: int = 1
    stage: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item, "status": self.status, "error": self.error}


Outcome = Result | Failure


@dataclass
class RunReport:
    """What a run produced. With ``on_outcome`` given, results are not kept."""

    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    succeeded: int = 0
    stats: dict[str, StatsSnapshot] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def completed(self) -> int:
        return self.succeeded + self.failed

    @property
    def ok(self) -> bool:
        return not self.failures
