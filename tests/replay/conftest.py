"""One headless Chromium (Debian's, driven by Playwright) for all replay page tests.

Never a downloaded browser: Playwright launches ``/usr/bin/chromium``. The
browser starts once for the package; each test gets a fresh context (no shared
cookies, storage or cache). Pages fail the test on any console error or
uncaught exception, and record every dialog (a dialog is an executed script).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.replay.browser import ARGS, CHROMIUM
from tests.replay.recording import Recording, record_session
from tests.services import missing_server

OUTPUT = Path(os.environ.get("DESKCORDER_TEST_OUTPUT", Path(__file__).parents[2] / "test-output"))


def _missing(what: str) -> None:
    message = f"{what} (bash .ci/setup installs it)"
    if sys.platform == "linux" and os.environ.get("DESKCORDER_TEST_ALL"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="package")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """One session recorded by the real agent under Xvfb, for every page test."""
    return record_session(tmp_path_factory.mktemp("recording"))


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if missing_server("chromium") is not None:
        _missing("Debian's chromium is not installed (the page tests run on Linux)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright's Python package is not installed")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageWatch:
    page: Any
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def clean(self) -> None:
        assert self.dialogs == [], f"a script ran and opened dialogs: {self.dialogs}"
        assert self.page_errors == [], self.page_errors
        assert self.console_errors == [], self.console_errors


@pytest.fixture
def watched(browser: Any) -> Iterator[PageWatch]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    watch = PageWatch(page)
    page.on(
        "console",
        lambda msg: watch.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda req: watch.requests.append(req.url))
    try:
        yield watch
    finally:
        context.close()


def save_png(page: Any, name: str) -> Path:
    """A PNG of the whole page in the test output, for people to look at."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(watch: PageWatch, target: Path | str, step: int | None = None) -> Any:
    """Open a replay page (a file or a URL), at ``step``; wait until it is drawn."""
    url = target.as_uri() if isinstance(target, Path) else target
    page = watch.page
    page.goto(url + (f"#step={step}" if step else ""))
    page.wait_for_selector("html[data-ready]")
    page.wait_for_function(
        "(n) => document.getElementById('step-counter').textContent.startsWith('Step ' + n + ' ')",
        arg=step or 1,
    )
    return page


def shot_loaded(page: Any) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('shot');"
        " return i.complete && i.naturalWidth > 0; }"
    )


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).text_content())
