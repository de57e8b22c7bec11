"""The replay page of a real recording, in a real headless Chromium.

A session recorded under Xvfb by the real agent (tests/replay/recording.py) is
written with ``deskcorder replay``; the page is opened from disk, stepped
through with the keyboard, and checked as a person would see it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.agent import DESKCORDER
from tests.replay.conftest import PageWatch, open_page, save_png, shot_loaded, text
from tests.replay.helpers import click
from tests.replay.recording import CLICKS, EXPECTED, HOSTILE_TITLE, Recording

pytestmark = pytest.mark.x11


@pytest.fixture(scope="module")
def page_file(recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pages") / "replay.html"
    done = subprocess.run(
        [
            *DESKCORDER,
            "replay",
            recording.session,
            "--spool",
            str(recording.spool),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"replay written: {out} (")
    return out


def test_step_through_the_session_with_the_keyboard(
    watched: PageWatch, page_file: Path, recording: Recording
) -> None:
    from playwright.sync_api import expect

    page = open_page(watched, page_file)
    assert page.title() == f"Session {recording.session}"
    assert "steps fromactions (the action reduction)" in text(page, "#details")
    n = len(EXPECTED)
    assert page.locator("#steps li").count() == n
    expect(page.locator("#step-counter")).to_have_text(f"Step 1 / {n}")
    for i, (label, title) in enumerate(EXPECTED):
        if i:
            page.keyboard.press("ArrowRight")
        expect(page.locator("#step-counter")).to_have_text(f"Step {i + 1} / {n}")
        assert text(page, "#step-label") == label
        assert text(page, "#win-title") == title
        assert page.locator("#steps li.current .l").text_content() == label
    page.keyboard.press("ArrowRight")  # stays on the last step
    expect(page.locator("#step-counter")).to_have_text(f"Step {n} / {n}")
    page.keyboard.press("Home")
    expect(page.locator("#step-counter")).to_have_text(f"Step 1 / {n}")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#step-counter")).to_have_text(f"Step {n - 1} / {n}")
    page.keyboard.press("]")  # from the end: no marked span after it, nothing moves
    page.keyboard.press("Home")
    page.keyboard.press("]")  # the next pause, lock, exclusion or gap: the pause
    expect(page.locator("#step-label")).to_have_text("paused (user)")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert "LLLLL" in text(page, "#step-detail")  # key kinds, never the characters
    assert "hello" not in page.content()
    shot_loaded(page)
    # the screenshot sheet loads thumbnails, when it comes into view
    first = page.locator("#sheet img").first
    first.scroll_into_view_if_needed()
    expect(first).to_have_attribute("src", re.compile(r"^replay\.files/[0-9a-f]{64}\.thumb\.webp$"))
    watched.clean()
    # nothing but the page and its screenshots was loaded: no network at all
    assert all(url.startswith("file://") for url in watched.requests), watched.requests
    save_png(page, "replay-typing-step.png")


def test_click_marker_sits_on_the_click_over_the_screenshot(
    watched: PageWatch, page_file: Path, recording: Recording
) -> None:
    for step, (x, y) in ((3, CLICKS[0]), (7, CLICKS[1]), (12, CLICKS[2])):
        page = open_page(watched, page_file, step)
        shot_loaded(page)
        shot = next(r for r in recording.records if r["k"] == "shot")
        assert page.evaluate("document.getElementById('shot').naturalWidth") == shot["w"]
        img = page.locator("#shot").bounding_box()
        ring = page.locator("#click-marker circle").first.bounding_box()
        left, top, width, height = shot["mon"]
        want_x = img["x"] + (x - left) * img["width"] / width
        want_y = img["y"] + (y - top) * img["height"] / height
        got_x = ring["x"] + ring["width"] / 2
        got_y = ring["y"] + ring["height"] / 2
        assert abs(got_x - want_x) <= 1.5 and abs(got_y - want_y) <= 1.5, (step, got_x, want_x)
        # where, and the action as the training data holds it
        assert text(page, "#step-detail") == f"at ({x}, {y})pyautogui.click(x={x}, y={y})"
        assert "after this step" in text(page, "#shot-info")  # the click's own screenshot
    save_png(page, "replay-click-step.png")
    watched.clean()


def test_the_pause_is_a_marked_span_on_the_timeline(
    watched: PageWatch, page_file: Path, recording: Recording
) -> None:
    page = open_page(watched, page_file)
    spans = page.locator("#spans .span")
    assert spans.count() == 1
    span = page.locator("#spans .span-pause")
    assert span.text_content() == "paused (user)"
    t = {r["k"]: r["t"] // 1000 for r in recording.records if r["k"] in ("pause", "resume")}
    t_end = max(r["t"] for r in recording.records) // 1000
    track = page.locator("#spans").bounding_box()
    box = span.bounding_box()
    inner = track["width"] - 2  # the track's 1 px borders
    assert abs(box["x"] - (track["x"] + 1 + inner * t["pause"] / t_end)) <= 2
    assert abs(box["width"] - inner * (t["resume"] - t["pause"]) / t_end) <= 2
    assert str(span.get_attribute("title")).startswith("paused (user)\n0:0")
    page.locator("#span-list li").first.click()
    assert text(page, "#step-label") == "paused (user)"
    assert text(page, "#no-shot") == "paused (user): nothing recorded"
    watched.clean()


def test_a_script_in_a_window_title_is_shown_as_text(watched: PageWatch, page_file: Path) -> None:
    page = open_page(watched, page_file, 11)
    assert text(page, "#step-label") == f"title: {HOSTILE_TITLE}"
    assert text(page, "#win-title") == HOSTILE_TITLE
    assert HOSTILE_TITLE in text(page, "#windows")
    # the page's own three script elements, no other; no dialog opened
    assert page.evaluate("document.scripts.length") == 3
    assert page.evaluate("document.querySelectorAll('#windows script, #steps script').length") == 0
    watched.clean()
    save_png(page, "replay-hostile-title.png")


def test_step_times_follow_the_clock_anchor_in_force(watched: PageWatch, tmp_path: Path) -> None:
    """A step after a wall-clock step shows the wall time of the fresh anchor."""
    from deskcorder.replay import build_replay
    from deskcorder.replay.page import render_page

    unix0 = 1_795_000_000_000_000_000
    header = {"session": "s", "clock": {"t": 0, "unix_ns": unix0, "utc": "?"}}
    back = unix0 + 5 * 10**9 - 3600 * 10**9  # at 5 s the clock was set back an hour
    records = [
        *click(1000, 10, 10),
        {
            "k": "clock",
            "t": 5_000_000,
            "cause": "step",
            "step_us": -3_600_000_000,
            "clock": {"t": 5_000_000, "unix_ns": back, "utc": "?"},
        },
        *click(65_000, 20, 20),
    ]
    path = tmp_path / "page.html"
    path.write_text(render_page(build_replay([header], records, steps="records")))
    page = open_page(watched, path, step=3)
    assert text(page, "#step-label") != "the wall clock moved back 1 h 00 min"
    want = page.evaluate(f"new Date({back // 10**6 + 60_000}).toLocaleTimeString()")
    assert text(page, "#step-time").endswith(" · " + want)
    page = open_page(watched, path, step=1)
    want = page.evaluate(f"new Date({unix0 // 10**6 + 1000}).toLocaleTimeString()")
    assert text(page, "#step-time").endswith(" · " + want)
    watched.clean()
