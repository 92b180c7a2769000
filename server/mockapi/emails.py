"""Deterministic fake email addresses, one per item id.

The address of item ``i`` comes from a Faker instance seeded with the string
``"<seed>:<i>"``. Seeding with a string goes through SHA-512 inside
``random.seed``, never through Python's per-process randomized ``hash()``,
so the same (seed, id) gives the same address in every run and on every
machine that has the same Faker version.
"""

from __future__ import annotations

import json

from faker import Faker

__all__ = ["EmailBook"]


class EmailBook:
    """The ``{"email": ...}`` body of every item, made on first use and kept."""

    def __init__(self, seed: int, locale: str = "en_US") -> None:
        self.seed = seed
        self._faker = Faker(locale)
        self._bodies: dict[int, bytes] = {}

    def email(self, item_id: int) -> str:
        self._faker.seed_instance(f"{self.seed}:{item_id}")
        return str(self._faker.email())

    def body(self, item_id: int) -> bytes:
        """The JSON body for ``GET /items/{item_id}``, as bytes."""
        body = self._bodies.get(item_id)
        if body is None:
            body = json.dumps({"email": self.email(item_id)}).encode()
            self._bodies[item_id] = body
        return body

    def warm(self, count: int) -> None:
        """Make the first ``count`` bodies now rather than on first request."""
        for item_id in range(count):
            self.body(item_id)
