"""Lesson 08 (a request pipeline): exercises."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from course.checks import Exercise, Incorrect
from course.records import Response
from course.stats import RequestEvent

__all__ = ["page_ids", "retried_items"]


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
        lambda page, response: response.json(),  # the whole page: the next stage would get its keys
        lambda page, response: [response.json()["items"]],  # one item, which is a list
        lambda page, response: response.json()["items"][:1],  # only the first id
        lambda page, response: [page],  # the page number, not the ids on it
        lambda page, response: [str(i) for i in response.json()["items"]],  # ids as text
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
        type("AllItems", (_RetriedItems,), {"before_request": lambda self, e: self.items.add(e.item)}),
        type(
            "FailedAnswers",
            (_RetriedItems,),
            {"after_request": lambda self, e: self.items.add(e.item) if e.status != 200 else None,
             "before_request": lambda self, e: None},
        ),
        type(
            "ListOfRetries",
            (),
            {
                "__init__": lambda self: setattr(self, "items", []),
                "before_request": lambda self, e: self.items.append(e.item) if e.attempt > 1 else None,
                "after_request": lambda self, e: None,
            },
        ),
        _RetriedItems(),  # an instance, not the class
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
