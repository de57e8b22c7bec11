"""Secure input from accessibility answers: the key filter's rules and the monitor's epochs.

Pure logic with a scripted field and a fake accessibility API (the real AT-SPI
bus is in tests/a11y/). A fake clock drives the bound on unknown answers.
"""

from __future__ import annotations

import threading
from typing import Any

from deskcorder.capture.a11y import UNKNOWN_BOUND_NS, AccessibilityMonitor
from deskcorder.capture.textbuf import SECURE_PLACEHOLDER, UNKNOWN_PLACEHOLDER
from deskcorder.events import RAW_ELEMENT, WindowInfo
from deskcorder.platform.base import Element
from tests.privacy.helpers import InstantField
from tests.privacy.test_textbuf import EDITOR, Driver
from tests.xserver import wait_for

TERM = WindowInfo(id=9, title="~ - xterm", app="XTerm", pid=99, process="xterm")


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


def delayed() -> tuple[Driver, InstantField, Clock]:
    """A driver whose field answers only when the test says so (``field.set``)."""
    clock = Clock()
    field = InstantField(False, clock=clock, instant=False)
    return Driver(field=field, clock=clock), field, clock


def texts(records: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in records if r["k"] == "text"]


def test_text_typed_before_the_answer_is_kept_once_confirmed() -> None:
    d, field, _ = delayed()
    d.press("tab")  # the focus may have moved: unknown until the field is identified
    d.type("abc")
    assert d.filter.buf is not None and d.filter.buf.unknown_ns
    field.set(False)  # identified after the keys: not a password field
    d.press("enter")
    assert texts(d.finish()) == ["abc"]


def test_a_flush_waits_for_the_answer_within_the_bound() -> None:
    d, field, _ = delayed()
    d.press("tab")
    d.type("abc")
    d.out += d.filter.flush(d.t)  # e.g. the window lost focus before the answer came
    assert texts(d.out) == [] and d.filter.parked
    field.set(False)
    d.out += d.filter.tick(d.t + 1)
    assert texts(d.out) == ["abc"] and not d.filter.parked


def test_no_answer_for_the_epoch_drops_the_text() -> None:
    d, field, _ = delayed()
    d.press("tab")
    d.type("abc")
    d.press("tab")  # another focus move before the first one was identified
    field.set(False)  # this answer is for the new epoch, not the one "abc" went into
    d.out += d.filter.tick(d.t + 1)
    assert texts(d.finish()) == [UNKNOWN_PLACEHOLDER]
    assert sum(1 for r in d.out if r.get("cls") == "letter") == 6  # key kinds stay


def test_unknown_beyond_the_bound_forgets_the_characters() -> None:
    d, field, clock = delayed()
    d.press("tab")
    d.type("abc")
    clock.ns += UNKNOWN_BOUND_NS + 1
    d.out += d.filter.tick(d.t + 1)
    buf = d.filter.buf
    assert buf is not None and buf.discarded and buf.chars == []  # not even in memory
    d.type("def")
    assert d.filter.buf is not None and d.filter.buf.chars == []
    field.set(False)  # identified at last: later text is kept again
    d.type("ghi")
    assert texts(d.finish()) == [UNKNOWN_PLACEHOLDER, "ghi"]


def test_a_password_field_seen_in_the_epoch_taints_its_text() -> None:
    field = InstantField(False)
    d = Driver(field=field)
    d.type("abc")  # the answer said "not a password field" (stale, it turns out)
    field.set(True)  # the platform reports the password field that had the focus
    d.type("secret")  # dropped entirely
    field.set(False)
    assert texts(d.finish()) == [SECURE_PLACEHOLDER]
    assert sum(1 for r in d.out if r.get("cls")) == 6  # only "abc" left key kinds


def test_focus_moving_keys_reset_the_answer_and_editing_keys_do_not() -> None:
    field = InstantField(False)
    d = Driver(field=field)
    for name in ("backspace", "left", "right", "up", "home", "shift_l", "delete"):
        d.press(name)
    assert field.resets == 0
    for name in ("tab", "enter", "esc", "f6"):
        d.press(name)
    d.combo("ctrl_l", "l")  # a shortcut (here: the browser's address bar)
    assert field.resets == 5


def test_redacted_mode_drops_password_keys_and_keeps_unknown_ones() -> None:
    for state, classes in ((True, 0), (None, 4), (False, 4)):
        d = Driver("redacted", field=InstantField(state))
        d.type("pass")
        assert sum(1 for r in d.finish() if r.get("cls")) == 2 * classes
        assert texts(d.out) == []


# -- the monitor ---------------------------------------------------------------------------
class FakeAcc:
    """A scripted accessibility API; ``gate`` makes a call hang until it is set."""

    poll_s: float | None = None

    def __init__(self) -> None:
        self.focus: Element | None = Element("text", "Name", (1, 2, 3, 4), ("frame", "text"))
        self.under: Element | None = Element("push button", "OK jane@example.com")
        self.gate: threading.Event | None = None
        self.calls = 0
        self.changed: Any = None

    def start(self, changed: Any) -> None:
        self.changed = changed

    def stop(self, timeout: float) -> None:
        pass

    def focused(self, window: WindowInfo | None, detail: bool) -> Element | None:
        self.calls += 1
        gate = self.gate
        if gate is not None:
            gate.wait(5)
        return self.focus

    def element_at(self, x: int, y: int, window: WindowInfo) -> Element | None:
        gate = self.gate
        if gate is not None:
            gate.wait(0.4)  # a slow application: answers after the monitor's limit
        return self.under


def started(acc: FakeAcc, **kw: Any) -> tuple[AccessibilityMonitor, list[tuple[Any, ...]]]:
    emitted: list[tuple[Any, ...]] = []
    monitor = AccessibilityMonitor(acc, **kw)  # type: ignore[arg-type]
    monitor.start(emitted.append)
    return monitor, emitted


def test_monitor_resets_to_unknown_and_answers_for_the_epoch() -> None:
    acc = FakeAcc()
    monitor, _ = started(acc)
    try:
        monitor.reset(EDITOR)
        epoch = monitor.answer().epoch
        wait_for(lambda: monitor.answer().state is False, 5, "answer")
        info = monitor.info(epoch)
        assert info is not None and info.safe_ns and not info.secure
        acc.focus = Element("password text", password=True)
        acc.changed()  # the platform saw a focus change
        wait_for(lambda: monitor.answer().state is True, 5, "password field")
        assert monitor.answer().epoch == epoch and info.secure  # same epoch: tainted
        acc.focus = None  # no accessibility there
        monitor.reset(TERM)
        wait_for(lambda: acc.calls >= 3 and monitor.answer().epoch == epoch + 1, 5, "asked")
        wait_for(lambda: monitor.status()["epoch"] == epoch + 1, 5, "epoch")
        assert monitor.answer().state is None
    finally:
        monitor.stop(2)


def test_an_answer_from_before_a_reset_is_thrown_away() -> None:
    acc = FakeAcc()
    acc.gate = threading.Event()  # the application is slow
    acc.focus = Element("password text", password=True)
    monitor, _ = started(acc)
    try:
        monitor.reset(EDITOR)
        first = monitor.answer().epoch
        wait_for(lambda: acc.calls == 1, 5, "the first question asked")
        # the pipeline side never waits for the hung call
        monitor.reset(EDITOR)
        monitor.lookup(5, 5, EDITOR, 1000)
        assert monitor.answer().state is None and not acc.gate.is_set()
        acc.focus = Element("text")
        acc.gate.set()
        wait_for(lambda: monitor.answer().state is False, 5, "answer for the new epoch")
        first_info = monitor.info(first)
        assert first_info is not None and not first_info.secure  # the late answer was dropped
    finally:
        acc.gate.set()
        monitor.stop(2)


def test_classify_fails_closed_and_honours_listed_apps() -> None:
    monitor = AccessibilityMonitor(FakeAcc(), unverified_apps=["XTerm"])  # type: ignore[arg-type]
    term_el = Element("terminal", unverified=True)
    assert monitor.classify(EDITOR, None) is None
    assert monitor.classify(EDITOR, Element("text")) is False
    assert monitor.classify(EDITOR, Element("password text", password=True)) is True
    assert monitor.classify(EDITOR, term_el) is None
    assert monitor.classify(TERM, None) is False  # policy lists it
    assert monitor.classify(TERM, term_el) is False
    assert monitor.classify(TERM, Element("password text", password=True)) is True


def test_click_lookup_within_the_limit_and_a_late_one_dropped() -> None:
    acc = FakeAcc()
    monitor, emitted = started(acc, elements=True, lookup_limit_ns=200_000_000)
    try:
        monitor.lookup(10, 20, EDITOR, 5000)
        wait_for(lambda: [e for e in emitted if e[3] == "click"], 5, "element emitted")
        click = next(e for e in emitted if e[3] == "click")
        assert click[0] == RAW_ELEMENT and click[2] == EDITOR.id and click[4] == 5000
        assert click[5].role == "push button"
        acc.gate = threading.Event()  # hung: answers only after the limit
        monitor.lookup(10, 20, EDITOR, 6000)
        wait_for(lambda: monitor.lookups["late"] == 1, 10, "late lookup dropped")
        assert [e[4] for e in emitted if e[3] == "click"] == [5000]
    finally:
        if acc.gate is not None:
            acc.gate.set()
        monitor.stop(2)


def test_focus_elements_are_emitted_once_per_change() -> None:
    acc = FakeAcc()
    monitor, emitted = started(acc, elements=True)
    try:
        for _ in range(3):
            monitor.reset(EDITOR)
            wait_for(lambda: monitor.answer().state is False, 5, "answer")
        assert len([e for e in emitted if e[3] == "focus"]) == 1
        acc.focus = Element("push button", "OK")
        acc.changed()
        wait_for(lambda: len([e for e in emitted if e[3] == "focus"]) == 2, 5, "new focus")
    finally:
        monitor.stop(2)
