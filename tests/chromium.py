"""Debian's Chromium for the signing page's browser tests, driven by Playwright.

One place for where it is, how it starts (headless, nothing fetched in the
background) and what a test says when it or Playwright is missing.
"""

from __future__ import annotations

from pathlib import Path

from tests.components import unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_browser() -> None:
    """Skip (or, where components are required, fail) without Chromium or Playwright."""
    if not CHROMIUM.exists():
        unavailable("Chromium not installed: apt-get install chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable("Playwright not installed: pip install -e '.[test]'")
