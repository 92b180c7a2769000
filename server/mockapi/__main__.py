"""``python -m server.mockapi [--host 127.0.0.1] [--port 8080] [--items 1000] [--seed 0] [--scenario JSON]``

Every command-line error (a bad argument, a scenario that cannot be read, a
port that cannot be bound) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from server.cli import OneLineParser

from .app import MAX_ITEMS, MockConfig, make_app
from .scenario import MAX_SCENARIO_BYTES, MAX_SEED, Scenario, ScenarioError, ScenarioTextError, short_repr, shorten
from .serve import serve

log = logging.getLogger("server.mockapi")

PROG = "python -m server.mockapi"


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, refused with a short message otherwise."""

    def convert(text: str) -> int:
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()) or len(digits) > len(str(max(abs(low), high))):
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, not {short_repr(text)}"
            )
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, not {value}")
        return value

    return convert


def _scenario(text: str) -> Scenario:
    """An argparse type: a scenario as JSON text, or ``@path`` of a JSON file."""
    source: str | bytes = text
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            with path.open("rb") as file:
                source = file.read(MAX_SCENARIO_BYTES + 1)
        except OSError as exc:
            raise argparse.ArgumentTypeError(
                f"cannot read the scenario file {short_repr(str(path), 300)}: {exc.strerror or exc}"
            ) from exc
    try:
        return Scenario.from_text(source)
    except ScenarioTextError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    except ScenarioError as exc:
        raise argparse.ArgumentTypeError(f"bad scenario: {exc}") from exc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog=PROG,
        description="The course's mock items API: /, /items, /items/{id}, plus scenarios of faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument(
        "--port",
        type=_whole_number(0, 65535),
        default=8080,
        help="TCP port (default 8080; 0 = any free port)",
    )
    parser.add_argument(
        "--items",
        type=_whole_number(0, MAX_ITEMS),
        default=1000,
        help=f"number of items, ids 0..N-1 (default 1000, at most {MAX_ITEMS})",
    )
    parser.add_argument(
        "--seed",
        type=_whole_number(-MAX_SEED, MAX_SEED),
        default=0,
        help="seed of the fake emails (default 0)",
    )
    parser.add_argument(
        "--scenario",
        type=_scenario,
        default=Scenario(),
        help='scenario JSON, or @file.json, e.g. \'{"rate_limit": {"requests": 100, "per": 1}}\'',
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (slower)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = make_app(MockConfig(items=args.items, seed=args.seed, scenario=args.scenario))
    try:
        asyncio.run(serve(app, args.host, args.port, access_log=args.access_log))
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
        reason = " ".join(str(exc).split())
        sys.stderr.write(f"{PROG}: error: cannot listen on {shorten(args.host, 60)}:{args.port}: {reason}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
