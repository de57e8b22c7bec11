"""Keystroke modes and modifier tracking (pipeline thread).

Modes (policy ``capture.keystrokes``):

* ``full``: like ``redacted`` for key records (a printable key's record holds
  only its class), plus the typed text, scrubbed, in ``text`` records (see
  ``deskcorder.capture.textbuf``); non-printable keys keep name and keysym.
* ``redacted`` (default): a printable key becomes its class only (letter,
  digit, space, punct) with no name, character or keysym; non-printable keys
  (enter, arrows, F-keys, modifiers) keep their name; shortcuts (ctrl, alt or
  super held) keep the key, so ``ctrl+c`` is recorded as ``c`` with ``ctrl``.
* ``shortcuts``: only non-printable keys and shortcuts; plain typing leaves no record.
* ``off``: no key records at all.
"""

from __future__ import annotations

from typing import Any

from deskcorder.events import MODIFIER_KEYS

_MODIFIER_OF = MODIFIER_KEYS  # pynput key names -> modifier written in records
_SHORTCUT_MODS = frozenset({"ctrl", "alt", "super"})
_ORDER = ("shift", "ctrl", "alt", "super", "altgr")
# special keys that type a printable character
_PRINTABLE_NAMES = {
    "space": " ",
    "kp_space": " ",
    "kp_decimal": ".",
    "kp_separator": ",",
    "kp_add": "+",
    "kp_subtract": "-",
    "kp_multiply": "*",
    "kp_divide": "/",
    "kp_equal": "=",
    **{f"kp_{d}": str(d) for d in range(10)},
}


def key_class(ch: str) -> str:
    if ch.isalpha():
        return "letter"
    if ch.isdigit():
        return "digit"
    if ch.isspace():
        return "space"
    return "punct"


class ModifierState:
    """Which modifiers are held, tracked per physical key from key down/up events."""

    def __init__(self) -> None:
        self._held: dict[str, str] = {}  # physical key name -> modifier

    def update(self, pressed: bool, name: str | None) -> bool:
        """Feed a key event; returns True if it was a modifier key."""
        if name is None:
            return False
        mod = _MODIFIER_OF.get(name)
        if mod is None:
            return False
        if pressed:
            self._held[name] = mod
        else:
            self._held.pop(name, None)
        return True

    def held(self) -> list[str]:
        mods = set(self._held.values())
        return [m for m in _ORDER if m in mods]

    def clear(self) -> None:
        self._held.clear()


class KeyRedactor:
    def __init__(self, mode: str) -> None:
        if mode not in ("full", "redacted", "shortcuts", "off"):
            raise ValueError(f"unknown keystroke mode {mode!r}")
        self.mode = mode
        self.mods = ModifierState()
        # how each held key's press was rendered: its release is rendered the same, so a
        # key pressed as plain typing never turns into a shortcut (spelling its character)
        # when ctrl goes down before it is released, and a shortcut's release stays one
        self._down: dict[object, dict[str, Any] | None] = {}

    def key(
        self, pressed: bool, char: str | None, name: str | None, vk: int | None
    ) -> dict[str, Any] | None:
        """Record fields (without ``k``/``t``) for one key event, or None to write nothing.

        Modifier state is updated even when nothing is written. A printable key
        never yields ``key`` or ``vk`` (either would spell the character); in
        ``full`` mode it yields ``ch``, which the pipeline's
        :class:`~deskcorder.capture.textbuf.KeyFilter` always removes (the
        character goes to the scrubbed ``text`` record instead).
        """
        is_mod = self.mods.update(pressed, name)
        if self.mode == "off":
            return None
        if is_mod:
            rec: dict[str, Any] = {"key": name}
            if self.mode == "full" and vk is not None:
                rec["vk"] = vk
            return rec
        ident = vk if vk is not None else (name or (char.lower() if char else None))
        if not pressed and ident in self._down:
            pressed_as = self._down.pop(ident)
            return None if pressed_as is None else dict(pressed_as)
        rec_out = self._render(char, name, vk)
        if pressed and ident is not None:
            self._down[ident] = None if rec_out is None else dict(rec_out)
        return rec_out

    def _render(self, char: str | None, name: str | None, vk: int | None) -> dict[str, Any] | None:
        rec: dict[str, Any]
        held = self.mods.held()
        printable = printable_of(char, name, vk)
        shortcut = bool(_SHORTCUT_MODS.intersection(held))
        if printable is None or shortcut:
            # non-printable key, or a shortcut: keep the key identity
            label = shortcut_label(char, name, vk) if shortcut else _safe_name(name)
            rec = {} if label is None else {"key": label}
            if self.mode == "full" and vk is not None and printable is None and label:
                rec["vk"] = vk
            if held:
                rec["mods"] = held
            return rec
        if self.mode == "shortcuts":
            return None
        rec = {"cls": key_class(printable)}
        if self.mode == "full":
            rec["ch"] = printable
            if held:
                rec["mods"] = held
        return rec


def _safe_name(name: str | None) -> str | None:
    """A non-printable key's name; never a single character."""
    if name is None or len(name) <= 1:
        return None
    return name


def printable_of(char: str | None, name: str | None, vk: int | None) -> str | None:
    """The character a key types, or None for non-printable keys.

    Covers keys reported by name only (``space``, keypad keys) and backends
    that put a character in ``name``. ``vk`` is not trusted to mean a
    character (its meaning differs per OS) but a key with neither character
    nor name is never labelled by it, so it cannot leak one either.
    """
    if char is not None and len(char) == 1 and char.isprintable():
        return char
    if name is not None:
        if len(name) == 1 and name.isprintable():
            return name
        return _PRINTABLE_NAMES.get(name.lower())
    return None


def shortcut_label(char: str | None, name: str | None, vk: int | None) -> str | None:
    """The key of a shortcut (``c`` for ctrl+c), also when the OS reports ``\x03``."""
    if name is not None and len(name) > 1 and name.lower() not in _PRINTABLE_NAMES:
        return name
    printable = printable_of(char, name, vk)
    if printable is not None:
        return printable.lower()
    if vk is not None and 32 < vk < 127:
        # ctrl+c arrives as '\x03' on some platforms: use the keysym's letter
        return chr(vk).lower()
    return None
