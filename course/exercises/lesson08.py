"""Lesson 08 (a request pipeline): exercises.

- ``page_ids``: an unpacker that fans one page out into the ids it lists;
- ``run_pipeline``: a request builder and that unpacker, run as the first of
  two ``Pipeline`` stages (list pages -> fetch each id), judged from the mock
  API's ``/_stats``: every id fetched once, every page listed once;
- ``one_limit``: the same pipeline under a strict rate limit, with one
  limiter shared by both stages (the server's 429 count says if it was);
- ``retried_items``: a request hook;
- ``test_fetch_emails``: an async test of async code, which the checker runs
  against a correct ``fetch_emails`` (it must pass) and planted bugs (it must fail).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from course.checks import Exercise, Incorrect, Mistake, checker_mock_api
from course.limiters import Gate, RateLimiter
from course.mockapi_control import MockAPIControl
from course.pipeline import Pipeline
from course.records import Request, Response, RunReport
from course.stats import RequestEvent
from course.workers import WorkerPool

__all__ = ["fetch_emails", "one_limit", "page_ids", "retried_items", "run_pipeline", "test_fetch_emails"]


def _page(items: list[int], page: int, per_page: int, total: int) -> Response:
    following = f"/items?page={page + 1}&per_page={per_page}" if items and page * per_page < total else None
    body = {"items": items, "page": page, "per_page": per_page, "total": total, "next": following}
    return Response(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


# (page number, the page's ids) of a 25-item API with 10 per page, and a page past the end
_PAGES = [(1, list(range(0, 10))), (3, list(range(20, 25))), (4, [])]


def _page_ids(page: int, response: Response) -> list[int]:
    """The ids listed on one page: each becomes an item of the next stage."""
    return response.json()["items"]


def _check_page_ids(answer: Any) -> None:
    for page, ids in _PAGES:
        got = answer(page, _page(ids, page, 10, 25))
        Incorrect.unless(
            isinstance(got, Iterable) and not isinstance(got, (str, bytes, dict)),
            f"for page {page} your unpacker returned {got!r}. The pipeline puts every element of what "
            "the unpacker returns on the next stage's queue, so return a list of ids.",
        )
        got = list(got)
        Incorrect.unless(
            got == ids,
            f"for page {page} the next stage would receive {got[:12]!r}, but the page lists {ids!r}. "
            "Look at the page's JSON body: the ids are under one key.",
        )


page_ids = Exercise(
    "page_ids",
    checker=_check_page_ids,
    hint_text=(
        "An unpacker is called as `unpack(item, response)`; `response.json()` is the page, a dict "
        "with `items`, `page`, `per_page`, `total` and `next`. Return only what the next stage needs."
    ),
    answer=_page_ids,
    wrong_answers=(
        # the whole page: the next stage would get its keys
        Mistake(lambda page, response: response.json(), "your unpacker returned {'items':"),
        # one item, which is a list
        Mistake(lambda page, response: [response.json()["items"]], "the next stage would receive [[0, 1"),
        Mistake(lambda page, response: response.json()["items"][:1], "would receive [0], but the page lists"),
        Mistake(lambda page, response: [page], "would receive [1], but the page lists"),
        Mistake(lambda page, response: [str(i) for i in response.json()["items"]], "would receive ['0'"),
    ),
    solution_code=(
        "def page_ids(page, response):\n"
        "    # one response in, many items out: every id on the page goes to the next stage\n"
        '    return response.json()["items"]\n'
    ),
    success="one response, many items: that is a fan-out.",
)


class _RetriedItems:
    """A hook that remembers every item that needed more than one attempt."""

    def __init__(self) -> None:
        self.items: set[Any] = set()

    def before_request(self, event: RequestEvent) -> None:
        if event.attempt > 1:
            self.items.add(event.item)

    def after_request(self, event: RequestEvent) -> None:
        pass


# (item, attempt number, status of that attempt; None = the connection failed)
_EVENTS = [(0, 1, 200), (1, 1, 500), (2, 1, 200), (1, 2, 500), (1, 3, 200), (7, 1, None), (7, 2, 200), (9, 1, 404)]


def _check_retried_items(answer: Any) -> None:
    Incorrect.unless(isinstance(answer, type), "give the class itself (RetriedItems), not an instance of it.")
    hook = answer()
    for item, attempt, status in _EVENTS:
        event = RequestEvent(item, f"http://127.0.0.1/items/{item}", attempt, "fetch")
        hook.before_request(event)
        if status is None:
            event.error = ConnectionResetError("dropped")
        else:
            event.status = status
        event.duration = 0.01
        hook.after_request(event)
    found = getattr(hook, "items", None)
    if found is None:
        raise Incorrect("keep what you find in an attribute named `items`.")
    if not isinstance(found, (set, frozenset)):
        raise Incorrect(f"`items` is a {type(found).__name__}; an item retried twice should appear once: use a set.")
    Incorrect.unless(
        set(found) == {1, 7},
        f"after the requests (item, attempt): {[(i, a) for i, a, _ in _EVENTS]} your hook kept "
        f"{sorted(found, key=repr)}, expected [1, 7]. Which attempt number does a retry have?",
    )


retried_items = Exercise(
    "retried_items",
    checker=_check_retried_items,
    hint_text=(
        "A hook is any object with `before_request(event)` and `after_request(event)`. "
        "`event.attempt` is 1 for the first try of an item and grows with each retry."
    ),
    answer=_RetriedItems,
    wrong_answers=(
        # every item, retried or not
        Mistake(
            type("AllItems", (_RetriedItems,), {"before_request": lambda self, e: self.items.add(e.item)}),
            "your hook kept [0, 1, 2, 7, 9], expected [1, 7]",
        ),
        # the items whose answer was not a 200: a 404 is not retried, a dropped connection is
        Mistake(
            type(
                "FailedAnswers",
                (_RetriedItems,),
                {"after_request": lambda self, e: self.items.add(e.item) if e.status != 200 else None,
                 "before_request": lambda self, e: None},
            ),
            "expected [1, 7]",
        ),
        Mistake(
            type(
                "ListOfRetries",
                (),
                {
                    "__init__": lambda self: setattr(self, "items", []),
                    "before_request": lambda self, e: self.items.append(e.item) if e.attempt > 1 else None,
                    "after_request": lambda self, e: None,
                },
            ),
            "use a set",
        ),
        Mistake(_RetriedItems(), "give the class itself"),  # an instance, not the class
    ),
    solution_code=(
        "class RetriedItems:\n"
        "    def __init__(self):\n"
        "        self.items = set()\n\n"
        "    def before_request(self, event):\n"
        "        if event.attempt > 1:  # attempt 1 is the first try\n"
        "            self.items.add(event.item)\n\n"
        "    def after_request(self, event):\n"
        "        pass\n"
    ),
    success="attach it with `hooks=[RetriedItems()]` to any stage.",
)


# -- run_pipeline: a request builder and a fanning-out unpacker, as two stages ----------------

_PIPELINE_PAGES, _PIPELINE_PER_PAGE = 3, 7  # the checker asks for pages 1-3 of 7 ids: ids 0-20


def _served(stats: dict[str, Any]) -> dict[int, int]:
    return {int(item): count for item, count in stats.get("served", {}).items()}


def _judge_pipeline(report: Any, stats: dict[str, Any], pages: int, per_page: int) -> None:
    """Every listed id fetched once, every page listed once, and the report says so."""
    expected = list(range(pages * per_page))
    others = {code: n for code, n in stats["by_status"].items() if code not in ("200", "429")}
    Incorrect.unless(
        not others,
        f"the server answered {others} besides its 200s. A 404 is a URL that names no item (did the "
        "second stage get ids, or whole pages?); a 400 is a page or per_page it refuses (pages count from 1).",
    )
    served = _served(stats)
    extra = sorted(set(served) - set(expected))
    Incorrect.unless(
        not extra,
        f"item {extra[0] if extra else ''} was fetched, but pages 1-{pages} of {per_page} ids list only "
        f"ids 0-{expected[-1]}: does your request builder ask for per_page={per_page}?",
    )
    missing = [item for item in expected if item not in served]
    Incorrect.unless(
        not missing, f"item {missing[0] if missing else ''} was never fetched ({len(missing)} ids missing)."
    )
    twice = {item: count for item, count in served.items() if count > 1}
    Incorrect.unless(
        not twice,
        "item {} was fetched {} times; once is enough.".format(*next(iter(twice.items()), ("", ""))),
    )
    page_requests = stats["by_status"].get("200", 0) - sum(served.values())
    Incorrect.unless(
        page_requests == pages,
        f"the server answered {page_requests} listing requests for {pages} pages: list each page once.",
    )
    Incorrect.unless(
        isinstance(report, RunReport),
        f"your function returned {type(report).__name__}; return the RunReport that `Pipeline(...).run(...)` gives.",
    )
    got = sorted(result.item for result in report.results)
    Incorrect.unless(
        got == expected,
        f"the report has {len(got)} results (items {got[:6]}...), expected one per id 0-{expected[-1]}: "
        "the results of the last stage are the fetched ids.",
    )


async def _run_pipeline(base_url: str, pages: int, per_page: int) -> RunReport:
    """Fetch every id listed on pages 1..``pages`` (``per_page`` ids each) of ``base_url/items``."""

    def listing_request(page: int) -> Request:  # the item of stage 1 is a page number
        return Request(f"{base_url}/items", params={"page": str(page), "per_page": str(per_page)})

    def listed_ids(page: int, response: Response) -> list[int]:  # one page in, many ids out
        return response.json()["items"]

    listing = WorkerPool(listing_request, unpack=listed_ids, workers=2, name="pages")
    fetching = WorkerPool(base_url + "/items/{item}", workers=8, name="emails")
    return await Pipeline(listing, fetching).run(range(1, pages + 1))


async def _check_run_pipeline(answer: Any) -> None:
    base_url = checker_mock_api({})
    report = await answer(base_url, _PIPELINE_PAGES, _PIPELINE_PER_PAGE)
    _judge_pipeline(report, MockAPIControl(base_url).stats(detail=True), _PIPELINE_PAGES, _PIPELINE_PER_PAGE)


async def _pipeline_of_whole_pages(base_url: str, pages: int, per_page: int) -> RunReport:
    def listing_request(page: int) -> Request:
        return Request(f"{base_url}/items", params={"page": str(page), "per_page": str(per_page)})

    # the default unpacker: the next stage gets the page's keys, not its ids
    listing = WorkerPool(listing_request, workers=2, name="pages")
    return await Pipeline(listing, WorkerPool(base_url + "/items/{item}", name="emails")).run(range(1, pages + 1))


async def _pipeline_without_per_page(base_url: str, pages: int, per_page: int) -> RunReport:
    def listing_request(page: int) -> Request:  # the server's default per_page is 100
        return Request(f"{base_url}/items", params={"page": str(page)})

    listing = WorkerPool(listing_request, unpack=lambda page, r: r.json()["items"], workers=2, name="pages")
    return await Pipeline(listing, WorkerPool(base_url + "/items/{item}", name="emails")).run(range(1, pages + 1))


async def _pipeline_from_page_zero(base_url: str, pages: int, per_page: int) -> RunReport:
    def listing_request(page: int) -> Request:
        return Request(f"{base_url}/items", params={"page": str(page), "per_page": str(per_page)})

    listing = WorkerPool(listing_request, unpack=lambda page, r: r.json()["items"], workers=2, name="pages")
    return await Pipeline(listing, WorkerPool(base_url + "/items/{item}", name="emails")).run(range(pages))


async def _pipeline_listing_twice(base_url: str, pages: int, per_page: int) -> RunReport:
    # lists every page, then lists them again in the pipeline
    async with WorkerPool(lambda url: Request(url), unpack=lambda url, r: r.json()["items"], workers=2) as pool:
        await pool.run([f"{base_url}/items?page={page}&per_page={per_page}" for page in range(1, pages + 1)])
    return await _run_pipeline(base_url, pages, per_page)


run_pipeline = Exercise(
    "run_pipeline",
    checker=_check_run_pipeline,
    hint_text=(
        "Stage 1's items are page numbers: its builder returns `Request(base_url + '/items', params={...})` "
        "with `page` and `per_page` (as text), and its unpacker returns the page's `items` list. "
        "Stage 2 is a `WorkerPool(base_url + '/items/{item}', ...)`. Give the stages different `name=`s "
        "and `await Pipeline(stage1, stage2).run(range(1, pages + 1))`."
    ),
    answer=_run_pipeline,
    wrong_answers=(
        Mistake(_pipeline_of_whole_pages, "404"),
        Mistake(_pipeline_without_per_page, "does your request builder ask for per_page=7"),
        Mistake(_pipeline_from_page_zero, "400"),
        Mistake(_pipeline_listing_twice, "6 listing requests for 3 pages"),
    ),
    solution_code=(
        "async def run_pipeline(base_url, pages, per_page):\n"
        "    def page_request(page):\n"
        "        query = {'page': str(page), 'per_page': str(per_page)}\n"
        "        return Request(base_url + '/items', params=query)\n\n"
        "    def ids_on(page, response):\n"
        "        return response.json()['items']   # fan out: every id becomes an item of stage 2\n\n"
        "    stage1 = WorkerPool(page_request, unpack=ids_on, workers=2, name='pages')\n"
        "    stage2 = WorkerPool(base_url + '/items/{item}', workers=8, name='emails')\n"
        "    return await Pipeline(stage1, stage2).run(range(1, pages + 1))\n"
    ),
    success="three listing requests, twenty-one fetches, each exactly once: the server says so.",
)


# -- one_limit: the same pipeline under a strict limit, one limiter for both stages ------------

_LIMIT, _LIMITED_PAGES, _LIMITED_PER_PAGE = 20, 5, 6  # 35 requests at 20/s: about 1.7 s


async def _one_limit(base_url: str, pages: int, per_page: int, rate: float) -> RunReport:
    """``run_pipeline`` against a server that admits ``rate`` requests a second, all stages together."""
    limiter, gate = RateLimiter(rate), Gate()  # one of each: the server counts every request

    def listing_request(page: int) -> Request:
        return Request(f"{base_url}/items", params={"page": str(page), "per_page": str(per_page)})

    listing = WorkerPool(
        listing_request, unpack=lambda page, r: r.json()["items"], workers=2, limiter=limiter, gate=gate, name="pages"
    )
    fetching = WorkerPool(base_url + "/items/{item}", workers=8, limiter=limiter, gate=gate, name="emails")
    return await Pipeline(listing, fetching).run(range(1, pages + 1))


async def _check_one_limit(answer: Any) -> None:
    base_url = checker_mock_api({"rate_limit": {"requests": _LIMIT, "per": 1.0}})
    report = await answer(base_url, _LIMITED_PAGES, _LIMITED_PER_PAGE, _LIMIT)
    stats = MockAPIControl(base_url).stats(detail=True)
    refused = stats["by_status"].get("429", 0)
    Incorrect.unless(
        refused == 0,
        f"the server refused {refused} requests with 429 (its limit: {_LIMIT} in any second, counting both "
        "stages). Does every stage take its slots from the same limiter?",
    )
    _judge_pipeline(report, stats, _LIMITED_PAGES, _LIMITED_PER_PAGE)


def _limited_pipeline(base_url: str, pages: int, per_page: int, limiters: tuple[Any, Any]) -> Any:
    def listing_request(page: int) -> Request:
        return Request(f"{base_url}/items", params={"page": str(page), "per_page": str(per_page)})

    listing = WorkerPool(
        listing_request, unpack=lambda page, r: r.json()["items"], workers=2, limiter=limiters[0], name="pages"
    )
    fetching = WorkerPool(base_url + "/items/{item}", workers=8, limiter=limiters[1], name="emails")
    return Pipeline(listing, fetching).run(range(1, pages + 1))


async def _a_limiter_per_stage(base_url: str, pages: int, per_page: int, rate: float) -> RunReport:
    return await _limited_pipeline(base_url, pages, per_page, (RateLimiter(rate), RateLimiter(rate)))


async def _only_the_fetches_limited(base_url: str, pages: int, per_page: int, rate: float) -> RunReport:
    return await _limited_pipeline(base_url, pages, per_page, (None, RateLimiter(rate)))


async def _no_limiter(base_url: str, pages: int, per_page: int, rate: float) -> RunReport:
    return await _run_pipeline(base_url, pages, per_page)


one_limit = Exercise(
    "one_limit",
    checker=_check_one_limit,
    hint_text=(
        "Make one `RateLimiter(rate)` (and one `Gate()`) before the stages, and pass the same objects "
        "as `limiter=` and `gate=` to both `WorkerPool`s."
    ),
    answer=_one_limit,
    wrong_answers=(
        Mistake(_a_limiter_per_stage, "refused"),  # each stage alone keeps to the rate; together they do not
        Mistake(_only_the_fetches_limited, "429"),
        Mistake(_no_limiter, "429"),
    ),
    solution_code=(
        "async def one_limit(base_url, pages, per_page, rate):\n"
        "    shared, pause = RateLimiter(rate), Gate()   # one of each, for every stage\n\n"
        "    def page_request(page):\n"
        "        query = {'page': str(page), 'per_page': str(per_page)}\n"
        "        return Request(base_url + '/items', params=query)\n\n"
        "    def ids_on(page, response):\n"
        "        return response.json()['items']\n\n"
        "    stage1 = WorkerPool(page_request, unpack=ids_on, workers=2,\n"
        "                        limiter=shared, gate=pause, name='pages')\n"
        "    stage2 = WorkerPool(base_url + '/items/{item}', workers=8,\n"
        "                        limiter=shared, gate=pause, name='emails')\n"
        "    return await Pipeline(stage1, stage2).run(range(1, pages + 1))\n"
    ),
    success="the server counts every request, whichever stage sent it: so does one shared limiter.",
)


# -- test_fetch_emails: a test of async code, run against good and planted-bug code -------------


async def fetch_emails(base_url: str, ids: Iterable[int]) -> dict[int, str]:
    """The email of each id, ``{id: email}``, each fetched once from ``base_url/items/{id}``.

    The code under test in exercise ``test_fetch_emails`` (a correct version).
    """
    async with WorkerPool(base_url.rstrip("/") + "/items/{item}", workers=4, name="emails") as pool:
        report = await pool.run(list(ids))
    return {result.item: result.data["email"] for result in report.results}


async def _fetch_emails_twice(base_url: str, ids: Iterable[int]) -> dict[int, str]:
    """Planted bug: right answer, but every item is fetched twice (a check request before the real one)."""
    wanted = list(ids)
    await fetch_emails(base_url, wanted)
    return await fetch_emails(base_url, wanted)


async def _fetch_emails_losing_one(base_url: str, ids: Iterable[int]) -> dict[int, str]:
    """Planted bug: the last id is neither fetched nor in the answer (an off-by-one)."""
    wanted = list(ids)
    return await fetch_emails(base_url, wanted[:-1])


_IMPLEMENTATIONS = (
    ("a correct fetch_emails", fetch_emails, True),
    ("a fetch_emails that fetches every item twice (its answer is right)", _fetch_emails_twice, False),
    ("a fetch_emails that leaves out the last id", _fetch_emails_losing_one, False),
)


async def _check_test_fetch_emails(answer: Any) -> None:
    for label, implementation, correct in _IMPLEMENTATIONS:
        base_url = checker_mock_api({})  # counters cleared: the test starts from zero
        try:
            await answer(implementation, base_url)
        except Exception as exc:  # a test fails by raising, most often an AssertionError
            if correct:
                raise Incorrect(
                    f"your test failed on {label}: {type(exc).__name__}: {str(exc)[:200]}. "
                    "A test must pass when the code is right."
                ) from exc
        else:
            Incorrect.unless(
                correct,
                f"your test passed on {label}; it should fail there. Assert on what fetch_emails returned "
                "AND on what the server saw: MockAPIControl(base_url).stats(detail=True)['served'] "
                "counts each id's 200s.",
            )


async def _test_fetch_emails(fetch_emails: Any, base_url: str) -> None:
    """Passes on a correct ``fetch_emails``, fails on one that loses an id or fetches one twice."""
    ids = [3, 14, 15, 92, 65]
    emails = await fetch_emails(base_url, ids)
    assert sorted(emails) == sorted(ids), f"answered for {sorted(emails)}, asked for {sorted(ids)}"
    assert all("@" in email for email in emails.values())
    served = MockAPIControl(base_url).stats(detail=True)["served"]  # the server's side
    assert served == {str(i): 1 for i in ids}, f"the server served {served}"


async def _asserts_nothing(fetch_emails: Any, base_url: str) -> None:
    await fetch_emails(base_url, [1, 2, 3])


async def _checks_only_the_answer(fetch_emails: Any, base_url: str) -> None:
    emails = await fetch_emails(base_url, [1, 2, 3])
    assert sorted(emails) == [1, 2, 3]


async def _checks_only_the_server(fetch_emails: Any, base_url: str) -> None:
    await fetch_emails(base_url, [1, 2, 3])
    served = MockAPIControl(base_url).stats(detail=True)["served"]
    assert all(count == 1 for count in served.values())


async def _fails_on_good_code(fetch_emails: Any, base_url: str) -> None:
    emails = await fetch_emails(base_url, [1, 2, 3])
    assert len(emails) == 3
    assert MockAPIControl(base_url).stats()["requests"] == 0  # wrong: the server saw three requests


test_fetch_emails = Exercise(
    "test_fetch_emails",
    checker=_check_test_fetch_emails,
    hint_text=(
        "Call `emails = await fetch_emails(base_url, ids)` with a handful of ids, then assert two things: "
        "the answer has exactly those ids as keys, and `MockAPIControl(base_url).stats(detail=True)['served']` "
        "(the server's own count of 200s per id, ids as text) is 1 for each of them and has no other id."
    ),
    answer=_test_fetch_emails,
    wrong_answers=(
        Mistake(_asserts_nothing, "your test passed on a fetch_emails that"),
        Mistake(_checks_only_the_answer, "passed on a fetch_emails that fetches every item twice"),
        Mistake(_checks_only_the_server, "passed on a fetch_emails that leaves out the last id"),
        Mistake(_fails_on_good_code, "your test failed on a correct fetch_emails"),
    ),
    solution_code=(
        "async def test_fetch_emails(fetch_emails, base_url):\n"
        "    wanted = [3, 14, 15, 92, 65]\n"
        "    emails = await fetch_emails(base_url, wanted)\n"
        "    assert set(emails) == set(wanted)          # the answer: every id, no other\n"
        "    served = MockAPIControl(base_url).stats(detail=True)['served']\n"
        "    assert served == {str(i): 1 for i in wanted}   # the wire: each id fetched once\n"
    ),
    success="it passes on correct code and fails on both planted bugs: a test that can fail.",
)
