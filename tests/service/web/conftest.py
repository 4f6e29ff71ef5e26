"""Browser fixtures for the page's end-to-end tests: Debian's Chromium driven by Playwright's sync API,
one browser per session, a fresh context per test, and the directory where screenshots are kept.

A missing Chromium or Playwright is a test FAILURE with the command that fixes it, never a skip:
`make test` installs both. The server under test is tests/conftest.py's `live_server`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# The system binary (`playwright install` cannot download here); flags from /work/shared/TOOLING.md.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1200, "height": 900}


# Module scope, not session: Playwright's sync API keeps an asyncio event loop running in the main
# thread while it is open, and any later test that calls asyncio.run() (the benchmarks' quick runs)
# would fail with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: .venv/bin/pip install -e '.[dev]' (or make test)", pytrace=False)
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: apt-get install -y --no-install-recommends chromium "
            "(make test does it as root), or set CHROMIUM_PATH",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh page whose relative URLs resolve against the live server; anything else is blocked and
    recorded in `page.foreign_requests`, so a test can assert the page never leaves the service."""
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server)
    foreign: list[str] = []

    def only_the_service(route: Any) -> None:
        url = route.request.url
        if url.startswith(live_server + "/"):
            route.continue_()
        else:
            foreign.append(url)
            route.abort()

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.foreign_requests = foreign
    page.page_errors = []
    page.on("pageerror", lambda error: page.page_errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture(scope="session")
def artifact_dir() -> Path:
    """Screenshots land here (TEST_ARTIFACTS_DIR, default tests/artifacts/web) so CI can keep them."""
    directory = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "tests" / "artifacts")) / "web"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
