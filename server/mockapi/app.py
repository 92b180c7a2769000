"""The mock items API as an aiohttp application: ``make_app(config)``.

Public routes (subject to the scenario, counted in the stats):

- ``GET /``                -> ``Hello, world``
- ``GET /items``           -> ``[0, 1, ..., N-1]``
- ``GET /items?page=P&per_page=K`` -> one page and a link to the next
- ``GET /items/{id}``      -> ``{"email": "..."}``

Control routes (underscore prefix: never faulted, limited or counted):
``GET /_info``, ``GET|PUT /_scenario``, ``POST /_reset``, ``GET /_stats[?detail=1]``.

Every error answer is JSON ``{"error": "<what went wrong and what to do>"}``,
including bad input (ids, query parameters, scenario bodies: see README.md).
The control routes have no authentication: the server is a local teaching
tool and binds to loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from .emails import EmailBook
from .faults import FaultPlan, Verdict
from .scenario import MAX_SCENARIO_BYTES, Scenario, ScenarioError, ScenarioTextError, short_repr, shorten
from .stats import DROPPED, Stats

__all__ = ["STATE", "VERSION", "MockConfig", "MockState", "make_app"]

VERSION = "1.0.0"
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100
MAX_PAGE = 1_000_000_000
#: Most items a server may hold (``GET /items`` answers all of their ids in one body).
MAX_ITEMS = 1_000_000
_MAX_ID_DIGITS = len(str(MAX_ITEMS))
#: The query parameters ``GET /items`` and ``GET /_stats`` understand.
_PAGE_PARAMS = ("page", "per_page")
_STATS_PARAMS = ("detail",)
_DETAIL_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class MockConfig:
    """How the server starts: ``items`` ids, the email ``seed``, the first ``scenario``.

    ``warm_items`` emails are made at start so that first requests are as fast as later ones.
    """

    items: int = 1000
    seed: int = 0
    scenario: Scenario = field(default_factory=Scenario)
    warm_items: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.items <= MAX_ITEMS:
            raise ValueError(f"items must be from 0 to {MAX_ITEMS}, not {self.items}")


@dataclass
class MockState:
    """The live state of one app; ``plan`` and ``stats`` are replaced on reset."""

    config: MockConfig
    emails: EmailBook
    plan: FaultPlan
    stats: Stats
    items_body: bytes


STATE = web.AppKey("mockapi_state", MockState)
_NO_ROUTE = "no-route"
# Where ``_public`` leaves the request's Stats for the item handler
# (a typed web.RequestKey on recent aiohttp, a plain string on older ones).
_STATS = web.RequestKey("mockapi_stats", Stats) if hasattr(web, "RequestKey") else "mockapi.stats"


def make_app(config: MockConfig | None = None) -> web.Application:
    """Build the application; run it with ``server.mockapi.serve`` or ``web.run_app``."""
    config = config or MockConfig()
    now = time.monotonic()
    emails = EmailBook(config.seed)
    emails.warm(min(config.items, config.warm_items))
    # No aiohttp middleware on purpose: public handlers are wrapped one by one
    # (``_public``), which keeps the per-request cost close to a bare server's.
    app = web.Application()
    app[STATE] = MockState(
        config=config,
        emails=emails,
        plan=FaultPlan(config.scenario, now),
        stats=Stats(now),
        items_body=json.dumps(list(range(config.items))).encode(),
    )
    app.router.add_get("/", _public(hello))
    app.router.add_get("/items", _public(list_items))
    app.router.add_get("/items/{id}", _public(get_item))
    app.router.add_get("/_info", _control(info))
    app.router.add_get("/_scenario", _control(get_scenario))
    app.router.add_put("/_scenario", _control(put_scenario))
    app.router.add_post("/_reset", _control(reset))
    app.router.add_get("/_stats", _control(stats))
    app.router.add_route("*", "/{path:.*}", _public(no_route), name=_NO_ROUTE)
    return app


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON ``{"error": message}`` answer."""
    return web.json_response({"error": message}, status=status, headers=headers)


# -- the scenario and the stats, around every public route -----------------------


def _public(handler: Handler) -> Handler:
    """Wrap a public route: record it in the stats and apply the scenario (see ``faults.py``).

    Control routes (``/_...``) that reach a wrapped handler (only ``no_route``) pass straight through.
    """

    @functools.wraps(handler)
    async def public(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await _answer(request, handler)
        now = time.monotonic()
        state = request.app[STATE]
        stats = state.stats
        index = stats.arrive(now)
        request[_STATS] = stats
        status = "500"
        try:
            plan = state.plan
            if plan.quiet:  # the default scenario: nothing to decide
                response = await _answer(request, handler)
            else:
                faulted = await _apply_scenario(plan, request, handler, now)
                if faulted is None:
                    status = DROPPED
                    return web.Response()  # aiohttp finds the transport closed and writes nothing
                response = faulted
            status = str(response.status)
            return response
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            stats.finish(index, status)

    return public


def _control(handler: Handler) -> Handler:
    """Wrap a control route: no scenario, no stats, and a bug in it still answers in JSON."""

    @functools.wraps(handler)
    async def control(request: web.Request) -> web.StreamResponse:
        return await _answer(request, handler)

    return control


async def _apply_scenario(
    plan: FaultPlan, request: web.Request, handler: Handler, now: float
) -> web.StreamResponse | None:
    """The response the scenario calls for, or None after dropping the connection."""
    decision = plan.decide(request.path_qs, now)
    verdict = decision.verdict
    if verdict is Verdict.ANSWER:
        if decision.latency:
            await asyncio.sleep(decision.latency)
        response = await _answer(request, handler)
        if decision.headers:
            response.headers.update(decision.headers)
        return response
    if verdict is Verdict.OUTAGE:
        return error_response(
            503,
            f"The service is down for maintenance for another {decision.wait:.2f} s; "
            f"retry after {decision.retry_after} s.",
            {"Retry-After": str(decision.retry_after)},
        )
    if verdict is Verdict.LIMITED:
        rate = plan.scenario.rate_limit
        return error_response(
            429,
            f"Too many requests: the limit is {rate.requests if rate else '?'} per "
            f"{rate.per if rate else 0:g} s and a slot frees in {decision.wait:.3f} s. "
            f"Slow down and retry after {decision.retry_after} s.",
            {"Retry-After": str(decision.retry_after), **(decision.headers or {})},
        )
    if verdict is Verdict.ERROR:
        return error_response(
            500, "Simulated server error (the scenario's error_rate); retry the request.", decision.headers
        )
    # Verdict.DROP: close the connection without a word.
    if request.transport is not None:
        request.transport.close()
    return None


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the route's handler; a bug in it still answers in JSON, and is logged."""
    try:
        return await handler(request)
    except Exception as exc:
        log.exception("unhandled error answering %s %s", request.method, request.path_qs)
        return error_response(500, f"Internal error in the mock API ({type(exc).__name__}); see the server log.")


async def no_route(request: web.Request) -> web.Response:
    """Unknown path -> 404, known path with the wrong method -> 405 with ``Allow``; both in JSON."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name != _NO_ROUTE:
            match, methods = await resource.resolve(request)
            allowed |= methods if match is None else set()
    if allowed:
        allow = ", ".join(sorted(allowed))
        return error_response(
            405, f"{shorten(request.method)} is not allowed on {shorten(request.path)}; use {allow}.", {"Allow": allow}
        )
    return error_response(
        404,
        f"No route {shorten(request.path)}. The routes are GET /, /items, /items?page=P&per_page=K, "
        f"/items/{{id}} and the control routes /_info, /_scenario, /_reset, /_stats.",
    )


# -- public routes ------------------------------------------------------------


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def list_items(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = request.query
    try:
        _check_params(query, _PAGE_PARAMS, "GET /items?page=P&per_page=K")
        if not query:
            return web.Response(body=state.items_body, content_type="application/json")
        page = _positive_int(query.get("page", "1"), "page", MAX_PAGE)
        per_page = _positive_int(query.get("per_page", str(DEFAULT_PER_PAGE)), "per_page", MAX_PER_PAGE)
    except ValueError as exc:
        return error_response(400, str(exc))
    total = state.config.items
    first = (page - 1) * per_page
    last = min(first + per_page, total)
    more = last < total
    return web.json_response(
        {
            "items": list(range(first, last)) if first < total else [],
            "page": page,
            "per_page": per_page,
            "total": total,
            "next": f"/items?page={page + 1}&per_page={per_page}" if more else None,
        }
    )


def _positive_int(raw: str, name: str, high: int) -> int:
    # The length test comes first: int() of thousands of digits is slow, and refused over 4300.
    if len(raw) > len(str(high)) or not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from 1 to {high}, not {short_repr(raw)}.")
    return int(raw)


def _check_params(query: Mapping[str, str], known: tuple[str, ...], usage: str) -> None:
    """Refuse a query parameter the route does not know, or one given twice (ValueError saying which)."""
    names = [name for name, _ in query.items()]  # every occurrence (a multidict's keys() may not repeat)
    for name in names:
        if name not in known:
            allowed = ", ".join(known)
            raise ValueError(f"Unknown query parameter {short_repr(name)}; this route takes only {allowed} ({usage}).")
        if names.count(name) > 1:
            raise ValueError(f"{name} is given {names.count(name)} times; give it once ({usage}).")


async def get_item(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = request.match_info["id"]
    total = state.config.items
    # The length test comes first: int() of thousands of digits is slow, and refused over 4300.
    if (
        len(raw) > _MAX_ID_DIGITS
        or not (raw.isascii() and raw.isdigit())
        or (raw != "0" and raw[0] == "0")
        or int(raw) >= total
    ):
        ids = f"ids are whole numbers from 0 to {total - 1}" if total else "this server has no items (--items 0)"
        return error_response(404, f"No item {short_repr(raw)}: {ids}; GET /items lists them.")
    item_id = int(raw)
    stats: Stats | None = request.get(_STATS)
    if stats is not None:
        stats.item_served(item_id)
    return web.Response(body=state.emails.body(item_id), content_type="application/json")


# -- control routes -----------------------------------------------------------


async def info(request: web.Request) -> web.Response:
    config = request.app[STATE].config
    return web.json_response(
        {"server": "mockapi", "items": config.items, "seed": config.seed, "pid": os.getpid(), "version": VERSION}
    )


async def get_scenario(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].plan.scenario.to_json())


async def put_scenario(request: web.Request) -> web.Response:
    body = await _read_body(request, MAX_SCENARIO_BYTES)
    if body is None:
        too_large = error_response(
            413, f"The body is over {MAX_SCENARIO_BYTES} bytes; a scenario is a small JSON object."
        )
        too_large.force_close()  # the rest of the body is not read, so this connection cannot carry another request
        return too_large
    try:
        scenario = Scenario.from_text(body)
    except ScenarioTextError as exc:
        return error_response(400, f"Bad body: {exc}. Send a JSON scenario object such as {{\"error_rate\": 0.1}}.")
    except ScenarioError as exc:
        return error_response(400, f"Bad scenario: {exc}")
    state = request.app[STATE]
    state.plan = FaultPlan(scenario, time.monotonic())
    log.info("scenario replaced: %s", json.dumps(scenario.to_json()))
    return web.json_response(scenario.to_json())


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None if it is longer than ``limit`` bytes (read no further than that)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = time.monotonic()
    state.stats = Stats(now)
    state.plan = FaultPlan(state.plan.scenario, now)
    return web.json_response({"ok": True})


async def stats(request: web.Request) -> web.Response:
    query = request.query
    try:
        _check_params(query, _STATS_PARAMS, "GET /_stats?detail=1")
    except ValueError as exc:
        return error_response(400, str(exc))
    raw = query.get("detail", "0")
    detail = _DETAIL_VALUES.get(raw.lower())
    if detail is None:
        return error_response(400, f"detail must be 1 or 0 (or true/false, yes/no), not {short_repr(raw)}.")
    return web.json_response(request.app[STATE].stats.snapshot(time.monotonic(), detail=detail))
