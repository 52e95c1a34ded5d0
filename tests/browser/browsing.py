"""Driving Debian's Chromium with Playwright for Python: launched from /usr/bin/chromium,
never from `playwright install` (nothing is downloaded). Test modules call
`skip_unless_ready()` first, so that they skip, saying why, when either is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS_IMAGES = ROOT / "docs" / "images"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "a browser's password 42"


def skip_unless_ready() -> None:
    """Skip the calling test module when there is no browser to drive."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (bin/dev setup does "
                    "it as root)", allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                        "(pip install -e '.[dev]')")



@contextmanager
def chromium_page(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A fresh page of a headless Chromium; console errors and page errors are collected in
    `page.problems`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=viewport or {"width": 1360, "height": 900})
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.problems = []
            page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
            page.on("console", lambda message: message.type == "error"
                    and page.problems.append(f"console: {message.text}"))
            yield page
        finally:
            browser.close()


def log_in(page: Any, base: str, path: str, username: str) -> None:
    """Open `path`; being anonymous, land on the login page, sign in, come back."""
    page.goto(f"{base}{path}")
    assert page.url.startswith(f"{base}/login/?next="), page.url
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}{path}")


def screenshot(page: Any, name: str, docs_name: str | None = None, **options: Any) -> Path:
    """Save a screenshot in test-artifacts/ (and in docs/images/ when ASTRON_DOCS_IMAGES=1)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(400)  # CSS transitions (the progress bar) come to rest
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if docs_name and os.environ.get("ASTRON_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / docs_name), **options)
    return path
