"""Debian's Chromium, the way this project drives it (through Playwright, never a browser of its own).

The flags keep a headless Chromium quiet on a machine with no network but the
loopback: no sandbox (containers run as root), no GPU, no QUIC, and none of
the background fetches (updates, sync, first-run pages) that would otherwise
be refused many times a second.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
