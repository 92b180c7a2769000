"""The one client of the mock API's control routes: scenario, reset, stats.

The mock API (``server.mockapi``) is steered over HTTP, outside its public
routes: ``PUT /_scenario`` installs a scenario, ``POST /_reset`` clears the
counters and restarts the scenario clock, ``GET /_stats[?detail=1]`` says what
the server saw. Every caller in the project -- ``course.servers``, the lessons'
helpers (``course.timeline``), the benchmarks, the tests -- goes through this
module::

    control = MockAPIControl(api.url)
    control.use({"rate_limit": {"requests": 100}})   # install it, then reset: the clock starts now
    ...                                              # run a client
    control.stats(detail=True)                       # what the server saw

``MockAPIControl`` is synchronous (``urllib``: usable from a notebook's setup
cell, and ``import course.servers`` stays free of aiohttp);
``AsyncMockAPIControl`` does the same over an ``aiohttp`` session, for code
already inside an event loop. Both build the same URLs and raise the same
``ControlError``, whose message says what the server answered (e.g. which
scenario field it rejected).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the async variant uses the caller's session: no aiohttp import at run time
    import aiohttp

__all__ = ["AsyncMockAPIControl", "ControlError", "MockAPIControl", "call_json"]


class ControlError(RuntimeError):
    """A control route (``/_scenario``, ``/_reset``, ``/_stats``...) refused a call; says what it answered."""

    def __init__(self, method: str, url: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {url} answered {status}: {detail}")
        self.status = status
        self.detail = detail


def call_json(method: str, url: str, body: Any = None, *, timeout: float = 10.0) -> Any:
    """One JSON call to a bundled server's control route; returns the decoded answer.

    An answer other than 2xx raises ``ControlError`` with the server's explanation.
    """
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise ControlError(method, url, exc.code, exc.read().decode(errors="replace")) from exc
    return json.loads(raw) if raw.strip() else None


class _Routes:
    """Where the control routes of the mock API at ``base_url`` are."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    @property
    def scenario_url(self) -> str:
        return self.base_url + "/_scenario"

    @property
    def reset_url(self) -> str:
        return self.base_url + "/_reset"

    def stats_url(self, detail: bool) -> str:
        return self.base_url + "/_stats" + ("?detail=1" if detail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


def _scenario_body(scenario: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(scenario or {})


class MockAPIControl(_Routes):
    """Steer the mock API at ``base_url`` from plain (non-async) code."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        super().__init__(base_url)
        self.timeout = timeout

    def set_scenario(self, scenario: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Install ``scenario`` (``None``: no faults); returns it normalized, every key present.

        The counters are kept: call ``reset`` (or ``use``) to clear them.
        """
        installed: dict[str, Any] = call_json("PUT", self.scenario_url, _scenario_body(scenario), timeout=self.timeout)
        return installed

    def reset(self) -> None:
        """Clear the counters; the scenario clock and the rate-limit window restart."""
        call_json("POST", self.reset_url, timeout=self.timeout)

    def use(self, scenario: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``set_scenario`` then ``reset``: a fresh start under ``scenario``; returns it normalized."""
        installed = self.set_scenario(scenario)
        self.reset()
        return installed

    def stats(self, detail: bool = False) -> dict[str, Any]:
        """``GET /_stats``; with ``detail`` every arrival and the per-item counts too."""
        stats: dict[str, Any] = call_json("GET", self.stats_url(detail), timeout=self.timeout)
        return stats


class AsyncMockAPIControl(_Routes):
    """``MockAPIControl`` for async code, over the caller's ``aiohttp`` session (left open)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        super().__init__(base_url)
        self.session = session

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        async with self.session.request(method, url, json=body) as response:
            text = await response.text()
            if not 200 <= response.status < 300:
                raise ControlError(method, url, response.status, text)
        return json.loads(text) if text.strip() else None

    async def set_scenario(self, scenario: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Install ``scenario`` (``None``: no faults); returns it normalized. Counters are kept."""
        installed: dict[str, Any] = await self._call("PUT", self.scenario_url, _scenario_body(scenario))
        return installed

    async def reset(self) -> None:
        """Clear the counters; the scenario clock and the rate-limit window restart."""
        await self._call("POST", self.reset_url)

    async def use(self, scenario: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``set_scenario`` then ``reset``; returns the scenario normalized."""
        installed = await self.set_scenario(scenario)
        await self.reset()
        return installed

    async def stats(self, detail: bool = False) -> dict[str, Any]:
        """``GET /_stats``; with ``detail`` every arrival and the per-item counts too."""
        stats: dict[str, Any] = await self._call("GET", self.stats_url(detail))
        return stats
