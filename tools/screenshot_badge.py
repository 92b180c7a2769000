"""Take the picture of the unread badge that notebook 01 shows.

    python tools/screenshot_badge.py [--out notebooks/images/01_unread_badge.png]

Starts a messaging app of its own (fresh database, free port), makes two
users, lets ``bob`` send ``alice`` three messages over HTTP, then signs
``alice`` in with Debian's Chromium driven by Playwright (the way
``tests/browser/`` does) and photographs the top of her home page: the
navigation bar with its red "3". Needs ``/usr/bin/chromium``
(``make chromium``); without it the program says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from course import notify
from course.browser import CHROMIUM, CHROMIUM_ARGS
from course.servers import FAST_HASH, start_messaging_app

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "notebooks" / "images" / "01_unread_badge.png"
PASSWORD = "password"
UNREAD = 3


async def photograph(base_url: str, out: Path) -> int:
    """Make the users and messages, then screenshot alice's navigation bar; returns the badge number."""
    from playwright.async_api import async_playwright

    async with notify.client_session() as bob:
        await notify.register(bob, base_url, "alice", PASSWORD)
        await notify.register(bob, base_url, "bob", PASSWORD)
        await notify.login(bob, base_url, "bob", PASSWORD)
        for number in range(1, UNREAD + 1):
            await notify.send_message(bob, base_url, "alice", f"Message {number} from bob")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 240})
            await page.goto(base_url + "/auth/login")
            await page.fill("#username", "alice")
            await page.fill("#password", PASSWORD)
            await page.click("#submit")
            await page.wait_for_url("**/index")
            badge = page.locator("#message_count")
            await badge.wait_for(state="visible")
            shown = int(await badge.inner_text())
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.locator("nav").first.screenshot(path=str(out))
        finally:
            await browser.close()
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the PNG")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing: `make chromium` installs Debian's package", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="screenshot-badge-") as folder:
        server = start_messaging_app(port=None, folder=folder, config={"PASSWORD_HASH_METHOD": FAST_HASH}, reuse=False)
        try:
            shown = asyncio.run(photograph(server.url, args.out))
        finally:
            server.stop()
    print(f"wrote {args.out} (the badge shows {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
