"""Notices shown on the next page ("Your message has been sent."), kept small.

Flask's ``flash`` appends to a list in the session cookie that only a page
which shows it empties. A client that posts forms and never reads the pages
(a script, a load test) would grow that list with every post: a cookie
signed and parsed again on every request, costing more each time, until
browsers refuse it (about 4 KB). ``notice`` adds a notice only if the same
one is not already waiting, and keeps at most ``MAX_PENDING_NOTICES``.
"""

from __future__ import annotations

from flask import flash, session

__all__ = ["MAX_PENDING_NOTICES", "notice"]

#: The most notices a session holds before a page shows them (older ones are dropped).
MAX_PENDING_NOTICES = 5


def notice(text: str, category: str = "message") -> None:
    """``flash(text, category)``, unless it is already waiting; never more than ``MAX_PENDING_NOTICES``."""
    waiting = session.get("_flashes", [])
    if any(tuple(item) == (category, text) for item in waiting):
        return
    flash(text, category)
    if len(session["_flashes"]) > MAX_PENDING_NOTICES:
        session["_flashes"] = session["_flashes"][-MAX_PENDING_NOTICES:]
