"""`el` records: what the pipeline writes of the elements the accessibility monitor finds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deskcorder.capture.pipeline import Pipeline
from deskcorder.events import (
    RAW_BUTTON,
    RAW_ELEMENT,
    RAW_FOCUS,
    WindowInfo,
    validate_record,
)
from deskcorder.platform.base import Element
from tests.core.helpers import make_policy, ms, run_pipeline
from tests.privacy.helpers import InstantField

EDITOR = WindowInfo(id=1, title="notes - Editor", app="editor", pid=10)
VAULT = WindowInfo(id=2, title="Vault - KeePassXC", app="KeePassXC", process="keepassxc", pid=11)
BUTTON = Element(
    "push button", "Mail jane.doe@example.com", (5, 6, 70, 20), ("frame", "push button")
)
PASSWORD = Element("password text", "Your password", (5, 30, 70, 20), password=True)


class Lookups(InstantField):
    """The monitor's pipeline side: answers at once, remembers the lookups asked for."""

    def __init__(self) -> None:
        super().__init__(False)
        self.asked: list[tuple[Any, ...]] = []

    def lookup(self, x: int, y: int, window: WindowInfo | None, act: int) -> None:
        self.asked.append((x, y, window, act))


def run(tmp: Path, raws: list[tuple[Any, ...]], elements: bool = True) -> tuple[
    list[dict[str, Any]], Lookups
]:  # fmt: skip
    lookups = Lookups()

    def setup(p: Pipeline) -> None:
        p.key_filter.field = lookups
        p.a11y = lookups  # type: ignore[assignment]
        p._want_elements = elements

    policy = make_policy(capture={"elements": elements, "keystrokes": "full"})
    return run_pipeline(tmp, raws, policy, setup=setup), lookups


def click(at: float, x: int, y: int) -> list[tuple[Any, ...]]:
    return [(RAW_BUTTON, ms(at), x, y, "left", True), (RAW_BUTTON, ms(at + 1), x, y, "left", False)]


def test_click_element_is_written_scrubbed_for_the_focused_window(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), EDITOR), *click(5, 10, 20)]
    raws += [(RAW_ELEMENT, ms(8), EDITOR.id, "click", 5000, BUTTON)]
    raws += [(RAW_ELEMENT, ms(9), EDITOR.id, "focus", None, PASSWORD)]
    raws += [(RAW_ELEMENT, ms(10), 99, "click", 5000, BUTTON)]  # another window: dropped
    records, lookups = run(tmp_path, raws)
    assert lookups.asked == [(10, 20, EDITOR, 5000)]
    els = [r for r in records if r["k"] == "el"]
    assert els == [
        {"k": "el", "t": 8000, "src": "click", "win": 1, "act": 5000, "role": "push button",
         "name": "Mail [EMAIL]", "rect": [5, 6, 70, 20], "path": ["frame", "push button"]},
        {"k": "el", "t": 9000, "src": "focus", "win": 1, "role": "password text",
         "rect": [5, 30, 70, 20]},
    ]  # fmt: skip
    for rec in els:
        validate_record(rec)


def test_nothing_from_excluded_windows_or_with_elements_off(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), VAULT), *click(5, 10, 20)]
    raws += [(RAW_ELEMENT, ms(8), VAULT.id, "click", 5000, BUTTON)]
    records, lookups = run(tmp_path / "excluded", raws)
    assert lookups.asked == [] and not [r for r in records if r["k"] == "el"]
    assert "Mail" not in repr(records)
    raws = [(RAW_FOCUS, ms(1), EDITOR), *click(5, 10, 20)]
    raws += [(RAW_ELEMENT, ms(8), EDITOR.id, "click", 5000, BUTTON)]
    records, lookups = run(tmp_path / "off", raws, elements=False)
    assert lookups.asked == [] and not [r for r in records if r["k"] == "el"]


def test_a_click_flushes_typed_text_and_resets_the_answer(tmp_path: Path) -> None:
    from tests.privacy.test_pipeline_privacy import typing

    raws = [(RAW_FOCUS, ms(1), EDITOR), *typing("abc", 2), *click(10, 10, 20), *typing("d", 20)]
    records, lookups = run(tmp_path, raws, elements=False)
    assert lookups.resets == 2  # the focus change and the click
    kinds = [(r["k"], r.get("text")) for r in records if r["k"] in ("text", "bd")]
    assert kinds == [("text", "abc"), ("bd", None), ("text", "d")]
