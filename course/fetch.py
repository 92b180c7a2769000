"""Fetch every item of an items API, politely: ``python -m course.fetch BASE_URL --rate R``.

Lists ``BASE_URL/items`` (following pages when the API paginates), fetches
each ``BASE_URL/items/{id}`` through the worker pool (rate limit, 429/503
handling, bounded retries), and writes one JSON line per item to ``--out``
(or stdout)::

    {"id": 7, "status": 200, "data": {"email": "..."}}
    {"id": 8, "status": 500, "error": "gave up after 7 attempts; last error: HTTP 500 ..."}

Errors (5xx, timeouts, dropped connections) are retried ``--retries`` times
(default 6) after waits of 0.5, 1, 2, 4, 8, 8 s, each drawn at random
between half and all of that: an item fails only after 12 to 24 s of
errors, so a server that restarts in a few seconds costs no item. A 429 or
503 waits its ``Retry-After`` (seconds or an HTTP-date), up to
``--max-retry-after`` (default 60 s): a 429 asking for longer fails its
item, a 503 asking for longer stops the run.

The output file. Without ``--resume``, the lines go to a temporary file next
to FILE, which replaces FILE when the run ends -- finished, or interrupted
after at least one line; a run that stops with status 2 leaves FILE as it
was (and keeps its lines, if any, in the temporary file it names). With
``--resume``, FILE is appended to, one flushed line at a time: items that
already have a result line in it are not fetched again (items with an error
line are), and a run that finishes rewrites FILE with one line per item
(the latest). Interrupt a run and start it again with ``--resume``: nothing
fetched is fetched twice.

SIGINT (Ctrl-C) and SIGTERM stop the run gently: no new request is sent,
the answers of requests in flight are written, then the command exits. A
second signal stops it at once.

A fleet of processes (lesson 11). ``--shared-limit redis://HOST:PORT/DB``
makes every process that gives the same ``--limit-key`` (default: BASE_URL's
host and port) share ONE budget of ``--rate`` per ``--per`` seconds, kept in
Redis (``course.shared_limit``). ``--queue redis://HOST:PORT/DB --queue-name
NAME`` makes them share the work too (``course.work_queue``): the first
process lists the items into the queue, each item is fetched by whichever
process is free, and the results are kept in Redis, once per item; an item
held by a process that died is taken over after ``--claim-after`` seconds.
Add ``--export`` (with ``--out FILE`` or to stdout) to write every result
once, in listing order, when the queue is done. ``--rate auto`` finds the
pace by itself (``course.aimd``): it paces from the API's ``RateLimit-Policy``
header when there is one, else it starts low and speeds up until refused.

Progress and a summary go to stderr. Exit status: 0 every item fetched;
1 some items failed (each is written with its last error); 2 the run could
not be done (bad arguments, an output that cannot be written, a listing
that failed, a server unavailable for longer than ``--max-retry-after``);
130 interrupted by SIGINT; 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from course.aimd import AimdLimiter, aimd_policy
from course.limiters import RateLimiter
from course.listing import ListingError, list_items
from course.policies import MAX_RETRY_AFTER, ErrorPolicy, OutageTooLong, RetryPolicy
from course.records import Outcome
from course.shared_limit import SharedLimitError, SharedRateLimiter
from course.work_queue import QueueError, WorkQueue
from course.workers import RunReport, WorkerPool

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_RETRIES", "cli_retry_policy", "fetch_all", "main"]

log = logging.getLogger("course.fetch")

PROG = "python -m course.fetch"
EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number

DEFAULT_RETRIES = 6
DEFAULT_MAX_BODY = 10 * 1024 * 1024  # bytes


def cli_retry_policy(retries: int = DEFAULT_RETRIES, max_retry_after: float = MAX_RETRY_AFTER) -> RetryPolicy:
    """The command's budget for errors: waits of 0.5, 1, 2, 4, 8, 8 ... s, each between half and all of that.

    Longer than the library's default (built for a notebook's quick runs):
    a command left to run should ride out a server restart.
    """
    return RetryPolicy(retries=retries, base=0.5, cap=8.0, jitter=0.5, max_retry_after=max_retry_after)


# -- the command line -------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error in one line (argparse would print the whole usage first)."""
        self.exit(EXIT_CANNOT_RUN, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    least, most = cli_retry_policy().total_wait()
    parser = _Parser(
        prog=PROG,
        description="Fetch BASE_URL/items/{id} for every id listed at BASE_URL/items, "
        "at a steady rate, retrying errors; one JSON line per item.",
        epilog="Exit status: 0 all fetched, 1 some items failed, 2 the run could not be done "
        "(arguments, output, listing, or a server down for longer than --max-retry-after), "
        "130 SIGINT, 143 SIGTERM.",
    )
    parser.add_argument("base_url", metavar="BASE_URL", help="the API's root, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--rate",
        type=_rate,
        required=True,
        help="requests per --per seconds (the API's limit), or 'auto': read it from the API's "
        "RateLimit-Policy header, else find it (start low, speed up until refused)",
    )
    parser.add_argument("--per", type=float, default=1.0, help="the rate's period in seconds (default 1)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent workers (default 32)")
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write the JSON lines here (default: stdout); FILE is replaced when the run ends, "
        "and left as it was if the run cannot be done",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="append to --out FILE and skip the items that already have a result in it",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help=f"retries per item after errors: 5xx, timeouts, dropped connections (default {DEFAULT_RETRIES}: "
        f"waits of 0.5, 1, 2, 4, 8, 8 s, each jittered to between half and all of that, so an item "
        f"fails after {least:.0f} to {most:.0f} s of errors)",
    )
    parser.add_argument(
        "--max-retry-after",
        type=float,
        default=MAX_RETRY_AFTER,
        metavar="SECONDS",
        help=f"the longest Retry-After to wait (default {MAX_RETRY_AFTER:g}); a 429 asking for more fails "
        f"its item, a 503 asking for more stops the run",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--per-page", type=int, default=1000, help="page size when listing (default 1000)")
    parser.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help=f"the largest response body accepted (default {DEFAULT_MAX_BODY} = 10 MiB)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    fleet = parser.add_argument_group("a fleet of processes (Redis)")
    fleet.add_argument(
        "--shared-limit",
        metavar="redis://HOST:PORT/DB",
        help="share --rate with every process that gives the same Redis and --limit-key",
    )
    fleet.add_argument(
        "--limit-key", metavar="KEY", help="the name of the shared budget (default: BASE_URL's host:port)"
    )
    fleet.add_argument(
        "--queue",
        metavar="redis://HOST:PORT/DB",
        help="share the work: the items are listed once into a Redis queue, results are kept there",
    )
    fleet.add_argument("--queue-name", metavar="NAME", help="the queue's name (required with --queue)")
    fleet.add_argument(
        "--claim-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="take over the items another process has held this long without a result (default 60)",
    )
    fleet.add_argument(
        "--export",
        action="store_true",
        help="with --queue: when the queue is done, write every result once to --out (or stdout)",
    )
    args = parser.parse_args(argv)
    problem = _argument_problem(args)
    if problem:
        parser.error(problem)
    return args


AUTO = "auto"


def _rate(text: str) -> float | str:
    """``--rate``: a number, or ``auto``."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'auto', not {text!r}") from None


def _redis_url_problem(flag: str, value: str) -> str | None:
    """What is wrong with a ``redis://HOST:PORT/DB`` argument (None if nothing)."""
    url = urlsplit(value)
    try:
        _ = url.port
    except ValueError:
        return f"{flag} {value!r} has an invalid port"
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        return f"{flag} must be a redis://HOST:PORT/DB URL, not {value!r}"
    database = url.path.lstrip("/")
    if database and not (database.isdigit() and database.isascii()):
        return f"{flag} {value!r}: the database (the path) must be a number, e.g. redis://127.0.0.1:6379/0"
    return None


def _fleet_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the fleet's flags (None if nothing)."""
    for flag, value in (("--shared-limit", args.shared_limit), ("--queue", args.queue)):
        if value is not None:
            problem = _redis_url_problem(flag, value)
            if problem:
                return problem
    if args.limit_key is not None and args.shared_limit is None:
        return "--limit-key names a shared budget: give --shared-limit redis://HOST:PORT/DB too"
    if args.limit_key is not None and not args.limit_key.strip():
        return "--limit-key must not be empty"
    if args.shared_limit is not None and args.rate == AUTO:
        return "--rate auto finds one process's pace; with --shared-limit give the shared --rate as a number"
    if args.queue is None:
        for flag, given in (
            ("--queue-name", args.queue_name is not None),
            ("--export", args.export),
            ("--claim-after", args.claim_after != 60.0),
        ):
            if given:
                return f"{flag} works with a queue: give --queue redis://HOST:PORT/DB too"
        return None
    if not args.queue_name or not args.queue_name.strip():
        return "--queue needs --queue-name NAME (the processes that give the same name share the work)"
    if not (math.isfinite(args.claim_after) and args.claim_after > 0):
        return f"--claim-after must be a number of seconds > 0, not {args.claim_after}"
    if args.resume:
        return "--resume does not go with --queue: the queue itself remembers what is done"
    if args.out is not None and not args.export:
        return "with --queue the results are kept in Redis: add --export to write them to --out"
    return None


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments (None if nothing)."""
    url = urlsplit(args.base_url)
    try:
        _ = url.port
    except ValueError:
        return f"BASE_URL {args.base_url!r} has an invalid port"
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"BASE_URL must be an http:// or https:// URL with a host, not {args.base_url!r}"
    problem = _fleet_problem(args)
    if problem:
        return problem
    rate = 1.0 if args.rate == AUTO else args.rate
    for name, value in (("--rate", rate), ("--per", args.per), ("--timeout", args.timeout)):
        if not (math.isfinite(value) and value > 0):
            return f"{name} must be a number > 0, not {value}"
    if not (math.isfinite(args.max_retry_after) and args.max_retry_after >= 0):
        return f"--max-retry-after must be a number of seconds >= 0, not {args.max_retry_after}"
    for name, value, least in (
        ("--workers", args.workers, 1),
        ("--retries", args.retries, 0),
        ("--per-page", args.per_page, 1),
        ("--max-body", args.max_body, 1),
    ):
        if value < least:
            return f"{name} must be at least {least}, not {value}"
    if args.resume and args.out is None:
        return "--resume needs --out FILE (the file to resume)"
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir():
            return f"--out {args.out} is a folder; give a file name"
        if not out.parent.exists():
            return f"--out {args.out}: the folder {out.parent} does not exist"
        if not out.parent.is_dir():
            return f"--out {args.out}: {out.parent} is not a folder"
        if not os.access(out.parent, os.W_OK | os.X_OK):
            return f"--out {args.out}: the folder {out.parent} is not writable"
    return None


# -- the output -------------------------------------------------------------------


class OutputError(Exception):
    """``--out`` cannot be read, written or resumed."""


def _key(item: Any) -> str:
    """An id as a set key: its JSON text (7 and "7" are different ids)."""
    return json.dumps(item, sort_keys=True)


@dataclass
class _Output:
    """Where the JSON lines go; ``finish`` makes them permanent (see the module doc)."""

    stream: TextIO
    path: Path | None = None  # None: stdout
    temporary: Path | None = None  # a fresh run's lines, until they replace ``path``
    done: Set[str] = field(default_factory=frozenset)  # keys of the items with a result in ``path``
    written: int = 0

    def write(self, outcome: Outcome) -> None:
        try:
            self.stream.write(json.dumps(outcome.to_json()) + "\n")
            self.stream.flush()
        except OSError as error:
            raise OutputError(f"writing {self.path or 'stdout'} failed: {error.strerror or error}") from error
        self.written += 1

    def write_line(self, line: Any) -> None:
        """Write a line kept elsewhere (a queue's stored result) as it is."""
        try:
            self.stream.write(json.dumps(line) + "\n")
            self.stream.flush()
        except OSError as error:
            raise OutputError(f"writing {self.path or 'stdout'} failed: {error.strerror or error}") from error
        self.written += 1

    def finish(self, *, keep: bool, finished: bool) -> str | None:
        """Flush to disk; replace or compact FILE as the run's ending calls for. Returns a note for the user."""
        if self.path is None:
            self.stream.flush()
            return None
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        if self.temporary is None:  # resumed: the lines are in FILE already
            if finished:
                _compact(self.path)
            return None
        if keep and (finished or self.written):
            os.replace(self.temporary, self.path)
            return None
        if self.written:
            return f"{self.path} is unchanged; the {self.written} lines of this run are in {self.temporary}"
        self.temporary.unlink()
        return None


def open_output(path: str | None, *, resume: bool) -> _Output:
    """Open stdout, a temporary file next to ``path``, or ``path`` itself to resume (raises ``OutputError``)."""
    if path is None:
        return _Output(sys.stdout)
    target = Path(path)
    try:
        if resume:
            done = _resume_point(target)
            return _Output(open(target, "a", encoding="utf-8"), target, None, done)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.chmod(name, _file_mode(target))
        return _Output(os.fdopen(handle, "w", encoding="utf-8"), target, Path(name))
    except OSError as error:
        raise OutputError(f"cannot write --out {path}: {error.strerror or error}") from error


def _file_mode(path: Path) -> int:
    """FILE's permissions if it exists, else those of a new file (mkstemp's are owner-only)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _resume_point(path: Path) -> frozenset[str]:
    """Keys of the items that have a result line in ``path``; checks that it is this command's output.

    An unfinished last line (the command was killed while writing it) is cut off.
    """
    if not path.exists():
        return frozenset()
    done: set[str] = set()
    complete = 0  # bytes in whole lines
    line = None
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            line = _parse_line(raw)
            unfinished = not raw.endswith(b"\n")
            if line is None and raw.strip() and not (unfinished and raw.startswith(b'{"id": ')):
                raise OutputError(
                    f"--out {path} line {number} is not a line this command writes ({{\"id\": ...}}): "
                    f"refusing to resume into it; give another --out or move the file"
                )
            if unfinished:
                break  # the last line, cut short: see below
            complete += len(raw)
            if line is not None:
                _record(done, line)
    if complete < path.stat().st_size:
        if line is not None:  # whole but for its newline
            with open(path, "ab") as handle:
                handle.write(b"\n")
            _record(done, line)
        else:
            log.warning("%s ended in an unfinished line (a run was killed); it was removed", path)
            os.truncate(path, complete)
    return frozenset(done)


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """One output line as a dict with an ``id``, or None if it is not one."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    return line if isinstance(line, dict) and "id" in line else None


def _record(done: set[str], line: dict[str, Any]) -> None:
    if "error" in line:
        done.discard(_key(line["id"]))
    else:
        done.add(_key(line["id"]))


def _compact(path: Path) -> None:
    """Rewrite ``path`` with one line per item, the latest (a resumed file gains a line per retry)."""
    latest: dict[str, int] = {}
    count = 0
    with open(path, "rb") as lines:
        for count, raw in enumerate(lines, 1):
            line = _parse_line(raw)
            if line is not None:
                latest[_key(line["id"])] = count
    if len(latest) == count:
        return  # one line per item already
    keep = set(latest.values())
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    with os.fdopen(handle, "wb") as compacted, open(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            if number in keep:
                compacted.write(raw)
        compacted.flush()
        os.fsync(compacted.fileno())
    os.chmod(name, _file_mode(path))
    os.replace(name, path)


# -- the run ------------------------------------------------------------------------


class _DrainingLimiter(RateLimiter):
    """The command's rate limiter, which can stop letting requests out.

    After ``stop(then)`` no new request starts (a worker asking for a slot
    waits until the run is cancelled), and ``then()`` is called once no
    request is in flight: every request sent has had its answer written.
    """

    _then: Callable[[], Any] | None = None

    def stop(self, then: Callable[[], Any]) -> None:
        self._then = then
        if self.in_flight == 0:
            then()

    async def acquire(self, *, hold: bool = False) -> None:
        await super().acquire(hold=hold)
        if self._then is not None:
            if hold:
                self.release()
            await asyncio.Event().wait()  # for ever: the run is cancelled once the last answer is in

    def release(self) -> None:
        super().release()
        if self._then is not None and self.in_flight == 0:
            self._then()


class _DrainingSharedLimiter(_DrainingLimiter, SharedRateLimiter):
    """The shared rate limit, which can stop letting requests out."""


class _DrainingAimdLimiter(_DrainingLimiter, AimdLimiter):
    """The pace found by AIMD (or read from the headers), which can stop letting requests out."""


async def _new_items(items: AsyncIterator[Any], skip: Set[str]) -> AsyncIterator[Any]:
    """The listed items not in ``skip`` (resumed), each once (an API may list one twice)."""
    seen: set[str] = set()
    async for item in items:
        key = _key(item)
        if key in seen:
            log.warning("the listing gives item %r more than once; it is fetched once", item)
        elif key not in skip:
            seen.add(key)
            yield item


async def fetch_all(
    base_url: str,
    out: Callable[[Outcome], Awaitable[None] | None] | TextIO,
    *,
    rate: float,
    per: float = 1.0,
    workers: int = 32,
    retry: RetryPolicy | None = None,
    request_timeout: float = 30.0,
    per_page: int = 1000,
    max_body: int = DEFAULT_MAX_BODY,
    skip: Set[str] = frozenset(),
    limiter: RateLimiter | None = None,
    policy: ErrorPolicy | None = None,
    source: Callable[[WorkerPool], AsyncIterable[Any]] | None = None,
    progress: bool = False,
) -> RunReport:
    """List and fetch every item of ``base_url``; hand each outcome to ``out`` (or write it there as a JSON line).

    ``skip`` holds the JSON texts of ids not to fetch (``json.dumps(id)``);
    ``retry`` defaults to ``cli_retry_policy()``; ``limiter``, if given, is
    used instead of a ``RateLimiter(rate, per)``, and ``policy`` instead of
    the default ``ErrorPolicy()``. ``source(pool)``, if given, gives the
    items instead of the listing (a work queue's claims).
    """
    base = base_url.rstrip("/")
    if callable(out):
        sink = out
    else:
        stream = out

        def sink(outcome: Outcome) -> Awaitable[None] | None:
            stream.write(json.dumps(outcome.to_json()) + "\n")
            return None

    pool = WorkerPool(
        base.replace("{", "{{").replace("}", "}}") + "/items/{item}",  # braces in the URL are not placeholders
        workers=workers,
        limiter=limiter if limiter is not None else RateLimiter(rate, per),
        retry=retry if retry is not None else cli_retry_policy(),
        policy=policy,
        timeout=request_timeout,
        progress=progress,
        max_body=max_body,
    )
    async with pool:
        items = source(pool) if source is not None else _new_items(list_items(pool, base, per_page=per_page), skip)
        return await pool.run(items, on_outcome=sink)


@dataclass
class _Ending:
    code: int
    message: str
    finished: bool = False


@dataclass
class _Exported:
    """What ``--export`` wrote: lines, of which failures, and items with no result."""

    lines: int = 0
    failed: int = 0
    missing: int = 0


def _limit_key(base_url: str) -> str:
    """The default ``--limit-key``: the API's host and port (the budget is the API's)."""
    url = urlsplit(base_url)
    return f"{url.hostname}:{url.port or (443 if url.scheme == 'https' else 80)}"


def _make_limiter(args: argparse.Namespace) -> _DrainingLimiter:
    if args.rate == AUTO:
        return _DrainingAimdLimiter()
    if args.shared_limit is not None:
        key = args.limit_key or _limit_key(args.base_url)
        return _DrainingSharedLimiter(args.shared_limit, key, args.rate, args.per)
    return _DrainingLimiter(args.rate, args.per)


async def _fetch(
    args: argparse.Namespace, output: _Output, limiter: _DrainingLimiter
) -> tuple[RunReport, _Exported | None, str]:
    """Fetch (alone, or as one worker of a queue, then export); returns the report, the export, a note."""
    queue = None
    if args.queue is not None:
        queue = WorkQueue(args.queue, args.queue_name, claim_idle=args.claim_after, batch=min(10, args.workers))
    base = args.base_url.rstrip("/")
    sink: Callable[[Outcome], Awaitable[None] | None] = output.write
    source = None
    if queue is not None:
        work_queue = queue

        async def store(outcome: Outcome) -> None:
            await work_queue.store(outcome.item, outcome.to_json())

        def claims(pool: WorkerPool) -> AsyncIterable[Any]:
            async def items() -> AsyncIterator[Any]:
                await work_queue.fill(lambda: _new_items(list_items(pool, base, per_page=args.per_page), frozenset()))
                async for item in work_queue.claim():
                    yield item

            return items()

        sink, source = store, claims
    try:
        report = await fetch_all(
            args.base_url,
            sink,
            rate=1.0 if args.rate == AUTO else args.rate,
            per=args.per,
            workers=args.workers,
            retry=cli_retry_policy(args.retries, args.max_retry_after),
            request_timeout=args.timeout,
            per_page=args.per_page,
            max_body=args.max_body,
            skip=output.done,
            limiter=limiter,
            policy=aimd_policy() if args.rate == AUTO else None,
            source=source,
            progress=not args.quiet,
        )
        exported, note = None, ""
        if queue is not None:
            progress = await queue.progress()
            note = f"queue {args.queue_name!r}: {progress.done} of {progress.total} items have a result"
            if queue.reclaimed:
                note += f"; {queue.reclaimed} taken over from other workers"
            if args.export:
                exported = _Exported()
                async for _item, line in queue.results():
                    if line is None:
                        exported.missing += 1
                        continue
                    output.write_line(line)
                    exported.lines += 1
                    exported.failed += isinstance(line, dict) and "error" in line
        return report, exported, note
    finally:
        if queue is not None:
            await queue.aclose()
        if isinstance(limiter, SharedRateLimiter):
            await limiter.aclose()


async def _run(args: argparse.Namespace, output: _Output) -> _Ending:
    """Run the fetch; SIGINT/SIGTERM drain it (a second one cancels it at once)."""
    loop = asyncio.get_running_loop()
    limiter = _make_limiter(args)
    run = asyncio.create_task(_fetch(args, output, limiter))
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        if len(received) == 1:
            print(f"{signum.name}: finishing the requests in flight (again to stop at once)", file=sys.stderr)
            limiter.stop(then=run.cancel)
        else:
            run.cancel()

    handled = []
    for signum in EXIT_ON_SIGNAL:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # no signal handlers here (Windows, a thread)
            pass
    try:
        report, exported, note = await run
    except asyncio.CancelledError:
        if not received:
            raise
        return _Ending(EXIT_ON_SIGNAL[received[0]], f"stopped by {received[0].name}: {output.written} items written")
    except BaseException as error:
        reason = _why_the_run_cannot_go_on(error)
        if reason is None:
            raise
        return _Ending(EXIT_CANNOT_RUN, f"error: {reason}")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    ending = _summary(report, output)
    if note:
        ending.message += "\n" + note
    if exported is not None:
        ending.message += f"\nexported {exported.lines} results ({exported.failed} failed)"
        if exported.missing:
            ending.message += f"; {exported.missing} items have no result yet"
        if args.out is None:
            ending.message += " to stdout"
        ending.code = EXIT_FAILED if exported.failed or exported.missing else EXIT_OK
    return ending


def _why_the_run_cannot_go_on(error: BaseException) -> str | None:
    """The message for a listing, output or outage error (maybe raised by several workers at once), else None."""
    pending = [error]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        elif isinstance(error, ListingError | OutputError | SharedLimitError | QueueError):
            return str(error)
        elif isinstance(error, OutageTooLong):
            return f"{error} (or raise --max-retry-after)"
    return None


def _summary(report: RunReport, output: _Output) -> _Ending:
    stats = report.stats["fetch"]
    lines = [
        f"{report.succeeded} fetched, {report.failed} failed"
        + (f", {len(output.done)} in {output.path} already" if output.done else "")
        + f"; {stats.requests} requests ({stats.retries} retries), status {stats.by_status}, "
        f"errors {stats.errors}, {stats.elapsed:.1f} s"
    ]
    lines += [f"failed: item {failure.item!r}: {failure.error}" for failure in report.failures[:10]]
    return _Ending(EXIT_FAILED if report.failures else EXIT_OK, "\n".join(lines), finished=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        output = open_output(args.out, resume=args.resume)
    except OutputError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        ending = asyncio.run(_run(args, output))
    except KeyboardInterrupt:  # Ctrl-C before the handlers were in place
        ending = _Ending(EXIT_ON_SIGNAL[signal.SIGINT], "interrupted")
    stopped_by_signal = ending.code in EXIT_ON_SIGNAL.values()
    try:
        note = output.finish(keep=ending.finished or stopped_by_signal, finished=ending.finished)
    except OSError as error:
        print(f"{PROG}: error: could not save --out {args.out}: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(ending.message, file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    if stopped_by_signal and args.out:
        print(f"run the same command with --resume to fetch the rest into {args.out}", file=sys.stderr)
    return ending.code


if __name__ == "__main__":
    sys.exit(main())
