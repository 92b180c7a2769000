"""The checkers' servers outlive the check that started them.

``check()`` runs a checker in a thread of its own, which ends with the check;
a server started from that thread must still answer the next check.
"""

from __future__ import annotations

import threading
import time

from course.exercises._servers import messaging_app, mock_api
from course.mockapi_control import MockAPIControl


def _in_a_thread_that_ends(start):
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("value", start()))
    worker.start()
    worker.join()
    return box["value"]


def test_the_mock_api_started_from_a_check_thread_still_answers_after_it_ended():
    url = _in_a_thread_that_ends(lambda: mock_api({}))
    time.sleep(1.0)  # time enough for a server told to stop with its starter to go
    assert MockAPIControl(url).stats()["requests"] == 0
    assert mock_api({"rate_limit": {"requests": 5}}) == url  # the same server, reused


def test_the_messaging_app_started_from_a_check_thread_still_answers_after_it_ended():
    app = _in_a_thread_that_ends(lambda: messaging_app(users=3))
    time.sleep(1.0)
    import urllib.request

    with urllib.request.urlopen(app.url + "/healthz", timeout=10) as response:
        assert response.status == 200
    assert app.users == ("user1", "user2", "user3") and app.database.exists()
    assert messaging_app(users=3) is app
