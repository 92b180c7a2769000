"""course.lesson01_app: one fresh messaging app per kernel, shared by a live server and
an in-process app."""

from __future__ import annotations

import json
import urllib.request

from sqlalchemy import select

from course.lesson01_app import LessonApp
from server.messaging.extensions import db
from server.messaging.models import User


def test_start_twice_in_one_process_gives_the_same_server_and_database():
    first = LessonApp.start("test-lesson-app")
    try:
        again = LessonApp.start("test-lesson-app")
        assert again.server.url == first.server.url
        assert again.database_url == first.database_url
        assert again.server.running
    finally:
        first.stop()


def test_the_in_process_app_and_the_server_share_a_fresh_database():
    lesson = LessonApp.start("test-lesson-shared")
    try:
        app = lesson.flask_app()
        with app.app_context():
            assert db.session.scalars(select(User)).all() == []  # fresh
            db.session.add(User(username="zed", email="zed@example.com"))
            db.session.commit()
        with urllib.request.urlopen(lesson.server.url + "/index", timeout=30) as page:
            assert "zed" in page.read().decode()  # the server lists the user we wrote
        with urllib.request.urlopen(lesson.server.url + "/healthz", timeout=30) as answer:
            assert json.load(answer)["server"] == "messaging"
    finally:
        lesson.stop()


def test_a_stopped_lesson_server_can_be_started_again_on_its_database():
    lesson = LessonApp.start("test-lesson-restart")
    lesson.stop()
    assert not lesson.server.running
    again = LessonApp.start("test-lesson-restart")
    try:
        assert again.server.running
        assert again.database_url == lesson.database_url
    finally:
        again.stop()


def test_the_folder_and_server_are_gone_when_the_process_exits():
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "from course.lesson01_app import LessonApp\n"
        "lesson = LessonApp.start('test-lesson-exit')\n"
        "print(lesson.folder, lesson.server.url)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    folder, url = done.stdout.split()
    assert not Path(folder).exists()
    try:
        urllib.request.urlopen(url + "/healthz", timeout=5)
    except OSError:
        pass  # nothing answers any more
    else:
        raise AssertionError(f"the lesson's server at {url} outlived its process")
