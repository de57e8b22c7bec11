"""Keystroke modes and modifier tracking (pipeline thread).

Modes (policy ``capture.keystrokes``):

* ``full``: key name, character and keysym, with modifiers.
* ``redacted`` (default): a printable key becomes its class only (letter,
  digit, space, punct) with no name, character or keysym; non-printable keys
  (enter, arrows, F-keys, modifiers) keep their name; shortcuts (ctrl, alt or
  super held) keep the key, so ``ctrl+c`` is recorded as ``c`` with ``ctrl``.
* ``shortcuts``: only non-printable keys and shortcuts; plain typing leaves no record.
* ``off``: no key records at all.
"""

from __future__ import annotations

from typing import Any

# pynput key names -> modifier written in records
_MODIFIER_OF = {
    "shift": "shift",
    "shift_l": "shift",
    "shift_r": "shift",
    "ctrl": "ctrl",
    "ctrl_l": "ctrl",
    "ctrl_r": "ctrl",
    "alt": "alt",
    "alt_l": "alt",
    "alt_r": "alt",
    "alt_gr": "altgr",
    "iso_level3_shift": "altgr",
    "cmd": "super",
    "cmd_l": "super",
    "cmd_r": "super",
    "super": "super",
    "super_l": "super",
    "super_r": "super",
}
_SHORTCUT_MODS = frozenset({"ctrl", "alt", "super"})
_ORDER = ("shift", "ctrl", "alt", "super", "altgr")
# special keys that type a printable character
_PRINTABLE_NAMES = {"space": " "}


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

    def key(
        self, pressed: bool, char: str | None, name: str | None, vk: int | None
    ) -> dict[str, Any] | None:
        """Record fields (without ``k``/``t``) for one key event, or None to write nothing.

        Modifier state is updated even when nothing is written.
        """
        is_mod = self.mods.update(pressed, name)
        if self.mode == "off":
            return None
        held = self.mods.held()
        if is_mod:
            # the modifier itself: held list excludes the key's own state change noise
            rec: dict[str, Any] = {"key": name}
            if self.mode == "full" and vk is not None:
                rec["vk"] = vk
            return rec
        printable = (
            char
            if (char is not None and len(char) == 1 and char.isprintable())
            else (_PRINTABLE_NAMES.get(name or ""))
        )
        shortcut = bool(_SHORTCUT_MODS.intersection(held))
        if self.mode == "full":
            rec = {"key": name if name is not None else char}
            if char is not None:
                rec["ch"] = char
            if vk is not None:
                rec["vk"] = vk
            if held:
                rec["mods"] = held
            return rec
        if printable is None or shortcut:
            # non-printable key, or a shortcut: keep the key identity
            label = name if name is not None else (char.lower() if char else None)
            if shortcut and char is not None and not char.isprintable() and vk is not None:
                # ctrl+c arrives as '\x03' on some platforms: use the keysym's letter
                label = chr(vk).lower() if 32 < vk < 127 else label
            rec = {"key": label}
            if held:
                rec["mods"] = held
            return rec
        if self.mode == "shortcuts":
            return None
        return {"cls": key_class(printable)}
