"""``python -m server.mockapi [--host 127.0.0.1] [--port 8080] [--items 1000] [--seed 0] [--scenario JSON]``"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from .app import MockConfig, make_app
from .scenario import Scenario, ScenarioError
from .serve import serve

log = logging.getLogger("server.mockapi")


def _scenario(text: str) -> Scenario:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return Scenario.from_json(json.loads(text))
    except ValueError as exc:  # JSONDecodeError and ScenarioError are both ValueErrors
        kind = "bad scenario" if isinstance(exc, ScenarioError) else "not valid JSON"
        raise argparse.ArgumentTypeError(f"{kind}: {exc}") from exc


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m server.mockapi",
        description="The course's mock items API: /, /items, /items/{id}, plus scenarios of faults.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 = any free port)")
    parser.add_argument("--items", type=int, default=1000, help="number of items, ids 0..N-1 (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fake emails (default 0)")
    parser.add_argument(
        "--scenario",
        type=_scenario,
        default=Scenario(),
        help='scenario JSON, or @file.json, e.g. \'{"rate_limit": {"requests": 100, "per": 1}}\'',
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (slower)")
    args = parser.parse_args(argv)
    if args.items < 0:
        parser.error("--items must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = make_app(MockConfig(items=args.items, seed=args.seed, scenario=args.scenario))
    try:
        asyncio.run(serve(app, args.host, args.port, access_log=args.access_log))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
