"""A real browser for the tests: Debian's chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from hub.settings import REPO_ROOT
from tests.missing import missing

# Without the background-networking flags Chromium keeps calling home, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What a page shows may take a while on a loaded machine (JupyterLab loading beside other stacks):
# each expectation waits up to this long (Playwright's default is 5 s).
expect.set_options(timeout=30_000)

SCREENSHOTS = Path(os.environ.get("EC2HUB_SCREENSHOTS_DIR") or REPO_ROOT / "docs" / "screenshots")


def chromium_path() -> str:
    path = os.environ.get("EC2HUB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        missing(
            f"Debian's chromium is not installed ({path}); `make test` installs it (apt-get install chromium)"
        )
    return path


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it is open,
    # which asyncio tests in later modules would trip over.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Pages in fresh contexts (one per person), closed after the test."""
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(60_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
