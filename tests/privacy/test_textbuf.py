"""Text reconstruction and the key filter (no pipeline)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskcorder.capture.redact import KeyRedactor
from deskcorder.capture.textbuf import (
    SECURE_PLACEHOLDER,
    UNKNOWN_PLACEHOLDER,
    KeyFilter,
    TextBuffer,
)
from deskcorder.events import WindowInfo
from tests.privacy.helpers import InstantField

EDITOR = WindowInfo(id=1, title="notes.txt - Editor", app="editor")
OTHER = WindowInfo(id=2, title="Terminal", app="xterm")
LOGIN = WindowInfo(id=3, title="Sign in - Example", app="firefox")


class Driver:
    """Feeds raw key events through KeyRedactor + KeyFilter like the pipeline does."""

    def __init__(self, mode: str = "full", **kw: Any) -> None:
        self.red = KeyRedactor(mode)
        kw.setdefault("field", InstantField(False))  # accessibility: not a password field
        self.filter = KeyFilter(mode, **kw)
        self.out: list[dict[str, Any]] = []
        self.t = 0

    def key(self, pressed: bool, char: str | None, name: str | None, vk: int | None,
            win: WindowInfo | None = EDITOR, dt: int = 50_000) -> None:  # fmt: skip
        self.t += dt
        fields = self.red.key(pressed, char, name, vk)
        if fields is None:
            return
        rec = {"k": "kd" if pressed else "ku", "t": self.t, **fields}
        self.out += self.filter.key(rec, win)

    def type(self, text: str, win: WindowInfo | None = EDITOR) -> None:
        for ch in text:
            name, char = ("space", None) if ch == " " else (None, ch)
            self.key(True, char, name, ord(ch), win)
            self.key(False, char, name, ord(ch), win)

    def press(self, name: str, win: WindowInfo | None = EDITOR) -> None:
        self.key(True, None, name, 0xFF00, win)
        self.key(False, None, name, 0xFF00, win)

    def combo(self, mod: str, ch: str) -> None:
        self.key(True, None, mod, 0xFFE3)
        self.key(True, ch, None, ord(ch))
        self.key(False, ch, None, ord(ch))
        self.key(False, None, mod, 0xFFE3)

    def finish(self) -> list[dict[str, Any]]:
        self.out += self.filter.close(self.t + 1)
        return self.out

    def texts(self) -> list[str]:
        return [r["text"] for r in self.finish() if r["k"] == "text"]


def test_buffer_editing() -> None:
    buf = TextBuffer(1, 0)
    for ch in "helo":
        buf.type(ch)
    assert buf.left() and buf.type("l") is None
    assert buf.text == "hello"
    assert buf.right() and not buf.right()
    assert buf.backspace() and buf.text == "hell"
    assert buf.left() and buf.delete() and buf.text == "hel"
    assert not buf.delete()
    while buf.backspace():
        pass
    assert buf.text == "" and not buf.left()


def test_backspace_and_arrows_reconstruct_text() -> None:
    d = Driver()
    d.type("helo wrld")
    for _ in range(3):
        d.press("left")
    d.type("o")
    d.press("end")  # cursor position unknown afterwards: flush
    d.type("x")
    d.press("backspace")
    d.type("!")
    assert d.texts() == ["helo world", "!"]


def test_key_records_never_carry_characters_in_full_mode() -> None:
    d = Driver()
    d.type("Tr0ub4dor&3 xyz")
    d.combo("ctrl_l", "c")
    records = d.finish()
    for r in records:
        if r["k"] in ("kd", "ku"):
            assert "ch" not in r
            assert set(r) <= {"k", "t", "cls", "key", "vk", "mods"}
            if "cls" in r:
                assert set(r) == {"k", "t", "cls"}
    assert "Tr0ub4dor" not in repr([r for r in records if r["k"] != "text"])
    assert {"k": "kd", "t": records[-4]["t"], "key": "c", "mods": ["ctrl"]} in records


def test_secret_is_scrubbed_in_text_record() -> None:
    d = Driver()
    d.type("mail jane.doe@example.com card 4111 1111 1111 1111")
    d.press("enter")
    d.type("key ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
    assert d.texts() == ["mail [EMAIL] card [CARD]", "key [SECRET]"]
    assert "4111" not in repr(d.out) and "jane" not in repr(d.out)


@pytest.mark.parametrize("trigger", ["enter", "tab", "up", "page_down", "esc"])
def test_flush_keys(trigger: str) -> None:
    d = Driver()
    d.type("one")
    d.press(trigger)
    d.type("two")
    assert d.texts() == ["one", "two"]


def test_focus_change_and_idle_flush() -> None:
    d = Driver()
    d.type("one")
    d.type("two", win=OTHER)
    out = d.finish()
    texts = [(r["text"], r["win"]) for r in out if r["k"] == "text"]
    assert texts == [("one", 1), ("two", 2)]
    d = Driver(idle_us=2_000_000)
    d.type("abc")
    assert d.filter.tick(d.t + 1_000_000) == []
    flushed = d.filter.tick(d.t + 2_000_001)
    assert [r["text"] for r in flushed] == ["abc"]
    assert d.filter.buf is None


def test_shortcut_flushes_because_paste_is_unknown() -> None:
    d = Driver()
    d.type("abc")
    d.combo("ctrl_l", "v")
    d.type("def")
    assert d.texts() == ["abc", "def"]


def test_backspace_into_flushed_text_restarts_buffer() -> None:
    d = Driver()
    d.type("abc")
    d.press("enter")
    d.press("backspace")
    d.type("x")
    assert d.texts() == ["abc", "x"]


def test_buffer_is_bounded_and_split_keeps_card_whole() -> None:
    d = Driver(max_chars=80, keep_tail=40)
    text = "word " * 12 + "card 4111 1111 1111 1111 then more words here"
    d.type(text)
    texts = d.texts()
    assert len(texts) >= 2
    assert all(len(t) <= 81 for t in texts)
    assert "[CARD]" in " ".join(texts)
    assert "4111" not in " ".join(texts)
    assert d.filter.buf is None


def test_long_token_without_spaces_is_flushed_whole_and_scrubbed() -> None:
    d = Driver(max_chars=60, keep_tail=30)
    d.type("x" * 10 + " " + "Zx9Kq2Lm8Pn4Rt7Vw1Yb5Cd3" * 3)
    assert "Zx9Kq2" not in " ".join(d.texts())


def test_password_field_drops_printables_and_marks_text() -> None:
    field = InstantField(False)
    d = Driver(field=field)
    d.type("user")
    d.press("tab")
    field.set(True)  # the field that got the focus is a password field
    d.type("hunter2")
    field.set(False)
    d.press("enter")
    out = d.finish()
    assert [r["text"] for r in out if r["k"] == "text"] == ["user", SECURE_PLACEHOLDER]
    # no class records for the password: its length is not recorded either
    assert sum(1 for r in out if r.get("cls")) == 2 * len("user")


def test_unknown_field_records_key_kinds_but_no_text() -> None:
    d = Driver(field=InstantField(None))
    d.type("hunter2")
    assert d.texts() == [UNKNOWN_PLACEHOLDER]
    assert sum(1 for r in d.out if r.get("cls") == "letter") == 2 * len("hunter")


def test_sign_in_title_is_secure_in_every_mode() -> None:
    for mode in ("full", "redacted"):
        d = Driver(mode)
        d.type("hunter2", win=LOGIN)
        out = d.finish()
        assert not any("cls" in r for r in out)
        assert [r["text"] for r in out if r["k"] == "text"] == (
            [SECURE_PLACEHOLDER] if mode == "full" else []
        )


def test_redacted_mode_writes_no_text() -> None:
    d = Driver("redacted")
    d.type("jane@example.com")
    d.press("enter")
    assert d.texts() == []
    assert [r.get("cls") for r in d.out if r["k"] == "kd"][:4] == ["letter"] * 4


@settings(max_examples=300, deadline=None)
@given(
    char=st.characters(exclude_categories=("Cs",)),
    name=st.one_of(st.none(), st.sampled_from(["space", "kp_5", "kp_decimal", "a", "Z", "7"])),
    vk=st.one_of(st.none(), st.integers(0, 0x10FFFF)),
    mode=st.sampled_from(["full", "redacted", "shortcuts"]),
    shift=st.booleans(),
)
def test_no_printable_character_leaks_through_key_records(
    char: str, name: str | None, vk: int | None, mode: str, shift: bool
) -> None:
    d = Driver(mode)
    if shift:
        d.key(True, None, "shift_l", 0xFFE1)
    d.key(True, char, name, vk)
    d.key(False, char, name, vk)
    keyrecs = [r for r in d.out if r["k"] in ("kd", "ku")]
    for r in keyrecs:
        assert "ch" not in r
        if r.get("key") == "shift_l":
            continue
        # a printable key is written as its class only: no key, no keysym
        assert set(r) <= {"k", "t", "cls", "key", "vk", "mods"}
        if "key" in r:
            assert len(r["key"]) > 1 and not r["key"].startswith("kp_")
            assert "vk" not in r or r["key"] not in ("space",)


def test_filter_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        KeyFilter("full", max_chars=10, keep_tail=10)


@pytest.mark.parametrize(
    ("title", "secure"),
    [
        ("Sign in - Google Accounts - Chromium", True),
        ("Enter passphrase for key", True),
        ("Unlock Login Keyring", True),
        ("user@host: sudo apt upgrade", True),
        ("Verification code - Bank", True),
        ("notes.txt - Editor", False),
        ("Pseudocode review - Docs", False),
        ("Pinterest - Firefox", False),
        ("Authentication design.odt - LibreOffice", False),
    ],
)
def test_secure_title_rule(title: str, secure: bool) -> None:
    from deskcorder.capture.textbuf import SECURE_TITLE_RE

    assert (SECURE_TITLE_RE.search(title) is not None) is secure
