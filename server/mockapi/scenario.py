"""What the mock API is told to do wrong: the scenario record, read from JSON.

A scenario is plain data. ``Scenario.from_text`` reads it from JSON text (the
body of ``PUT /_scenario``, the ``--scenario`` option) and raises
:class:`ScenarioTextError` when the text itself is unusable (not UTF-8, not
JSON, too large, nested too deep, a repeated key); ``Scenario.from_json``
checks every field of the decoded object and raises :class:`ScenarioError`
naming the field at fault. ``to_json`` gives the normalized form back with
every key present, so ``GET /_scenario`` always shows the whole picture.

Times are seconds since the scenario started (the moment it was installed by
``PUT /_scenario``, ``POST /_reset`` or at server start).

Outage windows answer 503. Their ``Retry-After`` header is the window's
``retry_after`` when one is configured, otherwise the whole seconds left until
the window ends (rounded up, at least 1).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Latency",
    "Outage",
    "RateLimit",
    "RepeatingOutage",
    "Scenario",
    "ScenarioError",
    "ScenarioTextError",
    "short_repr",
    "shorten",
]

#: Largest latency (mean + jitter) and largest time value a scenario may ask for, in seconds.
MAX_LATENCY = 30.0
MAX_SECONDS = 86_400.0
#: Largest ``retry_after`` an outage may announce, in whole seconds.
MAX_RETRY_AFTER = 86_400
#: Largest ``rate_limit.requests`` (the limiter keeps one timestamp per admitted request).
MAX_REQUESTS = 1_000_000
#: Most one-off ``outages`` (each request checks every window).
MAX_OUTAGES = 1_000
#: Largest ``seed`` (a signed 64-bit integer).
MAX_SEED = 2**63 - 1
#: Largest scenario text, in bytes of UTF-8.
MAX_SCENARIO_BYTES = 1_048_576
#: Deepest nesting of JSON arrays and objects read (a scenario needs 3; the limit keeps the parser safe).
MAX_NESTING = 32
#: Integer literals longer than this are not converted (Python refuses over 4300 digits anyway).
_MAX_INT_DIGITS = 40


class ScenarioError(ValueError):
    """A scenario field is missing its right type or range; the message names the field."""


class ScenarioTextError(ScenarioError):
    """The scenario text cannot be read as one JSON document (encoding, syntax, size, nesting, repeated key)."""


def shorten(text: str, limit: int = 80, *, length: int | None = None) -> str:
    """``text`` as is, or its first ``limit`` characters and how long it was (``length``, default its own)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) if length is None else length} characters)"


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters so that an error message stays one short line."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # repr() refuses over 4300 digits
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return shorten(repr(value), limit, length=len(value) if isinstance(value, str) else None)


class _HugeInteger:
    """Stands in for a JSON integer literal too long to convert; every field check refuses it."""

    def __init__(self, literal: str) -> None:
        self.digits = len(literal.lstrip("-"))

    def __repr__(self) -> str:
        return f"a {self.digits}-digit number"


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` admitted requests in any window of ``per`` seconds.

    ``headers``: announce the limit in the IETF httpapi draft's
    ``RateLimit-Policy`` and ``RateLimit`` headers (``per`` must then be whole seconds).
    """

    requests: int
    per: float = 1.0
    headers: bool = False


@dataclass(frozen=True)
class Outage:
    """One window ``[start, start + duration)`` answered with 503."""

    start: float
    duration: float
    retry_after: int | None = None


@dataclass(frozen=True)
class RepeatingOutage:
    """Windows ``[start + k*period, start + k*period + duration)`` for k = 0, 1, 2...

    ``start`` defaults to ``period``: the first period runs without an outage.
    """

    period: float
    duration: float
    retry_after: int | None = None
    start: float | None = None

    @property
    def first_start(self) -> float:
        return self.period if self.start is None else self.start


@dataclass(frozen=True)
class Latency:
    """Seconds added to each admitted request: uniform in ``[mean - jitter, mean + jitter]``, floored at 0."""

    mean: float = 0.0
    jitter: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """The whole scenario; the default misbehaves in no way at all."""

    rate_limit: RateLimit | None = None
    outages: tuple[Outage, ...] = ()
    outage_every: RepeatingOutage | None = None
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency: Latency = field(default_factory=Latency)
    seed: int = 0

    @property
    def is_quiet(self) -> bool:
        """True when no request can be limited, failed, dropped or delayed."""
        return self == Scenario(seed=self.seed)

    @property
    def needs_dice(self) -> bool:
        """True when some request may be dropped, failed or delayed."""
        return bool(self.error_rate or self.drop_rate or self.latency.mean or self.latency.jitter)

    def outage_at(self, t: float) -> tuple[float, int | None] | None:
        """``(seconds until the window ends, configured retry_after)`` if ``t`` is inside an outage."""
        for outage in self.outages:
            if outage.start <= t < outage.start + outage.duration:
                return outage.start + outage.duration - t, outage.retry_after
        every = self.outage_every
        if every is not None and t >= every.first_start:
            into = (t - every.first_start) % every.period
            if into < every.duration:
                return every.duration - into, every.retry_after
        return None

    @classmethod
    def from_text(cls, text: str | bytes) -> Scenario:
        """Read a scenario from JSON text (UTF-8 when given bytes); see :func:`_decode`."""
        return cls.from_json(_decode(text))

    @classmethod
    def from_json(cls, data: Any) -> Scenario:
        """Check and convert a decoded JSON object; missing keys take their defaults."""
        obj = _object(data, "scenario", _SCENARIO_KEYS)
        rate = obj.get("rate_limit")
        if rate is not None:
            r = _object(rate, "rate_limit", {"requests", "per", "headers"})
            if "requests" not in r:
                raise ScenarioError(
                    'rate_limit.requests is required (an integer >= 1), e.g. {"requests": 100, "per": 1.0}'
                )
            rate = RateLimit(
                requests=_int(r["requests"], "rate_limit.requests", low=1, high=MAX_REQUESTS),
                per=_number(r.get("per", 1.0), "rate_limit.per", low=0.0, high=MAX_SECONDS, low_open=True),
                headers=_bool(r.get("headers", False), "rate_limit.headers"),
            )
            if rate.headers and not rate.per.is_integer():
                raise ScenarioError(
                    f"rate_limit.per must be a whole number of seconds when rate_limit.headers is true "
                    f"(the RateLimit-Policy header's window w is whole seconds), not {rate.per:g}"
                )
        outages_raw = obj.get("outages", [])
        if not isinstance(outages_raw, list):
            raise ScenarioError(
                'outages must be a list of {"start": s, "duration": s, "retry_after": n}, '
                f"not {_kind(outages_raw)}"
            )
        if len(outages_raw) > MAX_OUTAGES:
            raise ScenarioError(f"outages has {len(outages_raw)} windows; at most {MAX_OUTAGES} are allowed")
        outages = tuple(_outage(o, f"outages[{i}]") for i, o in enumerate(outages_raw))
        every = obj.get("outage_every")
        if every is not None:
            e = _object(every, "outage_every", {"period", "duration", "retry_after", "start"})
            for key in ("period", "duration"):
                if key not in e:
                    raise ScenarioError(f"outage_every.{key} is required (seconds > 0)")
            period = _number(e["period"], "outage_every.period", low=0.0, high=MAX_SECONDS, low_open=True)
            duration = _number(e["duration"], "outage_every.duration", low=0.0, high=MAX_SECONDS, low_open=True)
            if duration >= period:
                raise ScenarioError("outage_every.duration must be shorter than outage_every.period")
            start = e.get("start")
            every = RepeatingOutage(
                period=period,
                duration=duration,
                retry_after=_retry_after(e.get("retry_after"), "outage_every.retry_after"),
                start=None if start is None else _number(start, "outage_every.start", low=0.0, high=MAX_SECONDS),
            )
        latency_raw = obj.get("latency")
        lat = _object({} if latency_raw is None else latency_raw, "latency", {"mean", "jitter"})
        latency = Latency(
            mean=_number(lat.get("mean", 0.0), "latency.mean", low=0.0, high=MAX_LATENCY),
            jitter=_number(lat.get("jitter", 0.0), "latency.jitter", low=0.0, high=MAX_LATENCY),
        )
        if latency.mean + latency.jitter > MAX_LATENCY:
            raise ScenarioError(f"latency.mean + latency.jitter must be at most {MAX_LATENCY:g} seconds")
        return cls(
            rate_limit=rate,
            outages=outages,
            outage_every=every,
            error_rate=_number(obj.get("error_rate", 0.0), "error_rate", low=0.0, high=1.0),
            drop_rate=_number(obj.get("drop_rate", 0.0), "drop_rate", low=0.0, high=1.0),
            latency=latency,
            seed=_int(obj.get("seed", 0), "seed", low=0, high=MAX_SEED),
        )

    def to_json(self) -> dict[str, Any]:
        """The normalized scenario, every key present (what ``GET /_scenario`` shows)."""
        rate = self.rate_limit
        every = self.outage_every
        return {
            "rate_limit": None
            if rate is None
            else {"requests": rate.requests, "per": rate.per, "headers": rate.headers},
            "outages": [
                {"start": o.start, "duration": o.duration, "retry_after": o.retry_after} for o in self.outages
            ],
            "outage_every": None
            if every is None
            else {
                "period": every.period,
                "duration": every.duration,
                "retry_after": every.retry_after,
                "start": every.first_start,
            },
            "error_rate": self.error_rate,
            "drop_rate": self.drop_rate,
            "latency": {"mean": self.latency.mean, "jitter": self.latency.jitter},
            "seed": self.seed,
        }


_SCENARIO_KEYS = {"rate_limit", "outages", "outage_every", "error_rate", "drop_rate", "latency", "seed"}


def _object(value: Any, name: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{name} must be a JSON object, not {_kind(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        shown = ", ".join(short_repr(key, 30) for key in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ScenarioError(f"{name} has unknown key(s) [{shown}]{more}; allowed keys are {sorted(allowed)}")
    return value


def _kind(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, _HugeInteger)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _number(
    value: Any, name: str, *, low: float, high: float | None = None, low_open: bool = False
) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))  # (an int is finite, however large)
    ):
        raise ScenarioError(f"{name} must be a number, not {short_repr(value)}")
    if value < low or (low_open and value == low) or (high is not None and value > high):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and <= {high:g}" if high is not None else ""
        raise ScenarioError(f"{name} must be {bound}{upper}, not {short_repr(value)}")
    return float(value)


def _int(value: Any, name: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{name} must be an integer from {low} to {high}, not {short_repr(value)}")
    if value < low:
        raise ScenarioError(f"{name} must be >= {low}, not {short_repr(value)}")
    if value > high:
        raise ScenarioError(f"{name} must be <= {high}, not {short_repr(value)}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{name} must be true or false, not {short_repr(value)}")
    return value


def _retry_after(value: Any, name: str) -> int | None:
    return None if value is None else _int(value, name, low=1, high=MAX_RETRY_AFTER)


def _outage(value: Any, name: str) -> Outage:
    o = _object(value, name, {"start", "duration", "retry_after"})
    for key in ("start", "duration"):
        if key not in o:
            raise ScenarioError(f"{name}.{key} is required (seconds since the scenario started)")
    return Outage(
        start=_number(o["start"], f"{name}.start", low=0.0, high=MAX_SECONDS),
        duration=_number(o["duration"], f"{name}.duration", low=0.0, high=MAX_SECONDS, low_open=True),
        retry_after=_retry_after(o.get("retry_after"), f"{name}.retry_after"),
    )


# -- reading the text ----------------------------------------------------------

# A JSON string literal, escapes included; the closing quote is optional so that
# an unterminated string still matches in one pass (no backtracking blow-up).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _decode(text: str | bytes) -> Any:
    """Decode one JSON document, refusing what would make the parser misbehave.

    Refused with :class:`ScenarioTextError`: bytes that are not UTF-8, more than
    ``MAX_SCENARIO_BYTES``, arrays/objects nested deeper than ``MAX_NESTING``
    (Python's parser would raise RecursionError), a key repeated in one object,
    ``NaN`` / ``Infinity`` (not JSON). Integer literals too long to convert
    come back as a stand-in that every field check refuses by name.
    """
    if isinstance(text, bytes):
        size = len(text)
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioTextError(f"the scenario is {size} bytes; at most {MAX_SCENARIO_BYTES} are read")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioTextError(f"the scenario is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    elif len(text) > MAX_SCENARIO_BYTES:  # characters: at least as many bytes
        raise ScenarioTextError(f"the scenario is over {MAX_SCENARIO_BYTES} bytes; make it smaller")
    if _nesting(text) > MAX_NESTING:
        raise ScenarioTextError(
            f"the scenario nests arrays/objects more than {MAX_NESTING} levels deep; a scenario needs 3"
        )
    try:
        return json.loads(
            text,
            parse_int=_integer,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_keys,
        )
    except ScenarioTextError:
        raise
    except ValueError as exc:  # JSONDecodeError
        raise ScenarioTextError(f"the scenario is not valid JSON ({exc})") from exc


def _nesting(text: str) -> int:
    """How deep arrays and objects nest in ``text``, counted up to ``MAX_NESTING + 1``.

    Brackets inside strings do not count. Linear in the length of the text.
    """
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING:
                break
    return deepest


def _integer(literal: str) -> int | _HugeInteger:
    if len(literal) > _MAX_INT_DIGITS:
        return _HugeInteger(literal)
    return int(literal)


def _refuse_constant(name: str) -> float:
    raise ScenarioTextError(f"the scenario is not valid JSON ({name} is not a JSON number)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ScenarioTextError(f"the scenario gives the key {short_repr(key, 30)} twice in one object")
        result[key] = value
    return result
