"""Typed-text reconstruction and the per-key privacy filter (pipeline thread).

How ``keystrokes = "full"`` keeps secrets off disk
-------------------------------------------------

A key record written in ``full`` mode never carries the character of a
printable key: ``kd``/``ku`` records of printable keys hold only the key
class (``cls``), exactly as in ``redacted`` mode, so timing is kept and no
literal character reaches disk through a key record (nor through ``key`` or
``vk``, which would spell it too). The characters go into a bounded
per-window :class:`TextBuffer` that replays backspace, delete and left/right
arrows. When the buffer is flushed its text is scrubbed
(:func:`deskcorder.capture.scrub.scrub`) and written as one ``text`` record::

    {"k": "text", "t": <time of the flush>, "text": "mail [EMAIL] now", "win": 123}

``t`` is the flush time (so records stay in time order); the characters are
the ``cls`` key-down records of window ``win`` before it since the previous
``text`` record of that window.

The buffer is flushed on: enter, tab, escape and navigation keys that make the
cursor position unknown (up/down/home/end/page keys), a shortcut (ctrl, alt or
super held: paste/undo change the text in unknown ways), a mouse button
press (the pipeline: a click may move the caret), focus moving to another
window, 2 s without typing (:meth:`KeyFilter.tick`), the end of the session,
and when it holds more than ``max_chars`` characters (it then writes
the head up to a space that is not between digits, keeping at least
``keep_tail`` characters so a spaced card number or IBAN is not cut in two).

Secure input: when the secure-input probe says the focused field is a
password field, or the window title looks like a sign-in/password prompt, the
printable keys leave no record at all (not even their class, which would tell
the password's length) and the buffer's text is replaced by ``[SECURE]``.

The filter is used in every keystroke mode (secure input drops printable
keys in ``redacted`` mode too); only ``full`` mode buffers text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from deskcorder.capture.scrub import safe_scrub
from deskcorder.events import K_KEY_DOWN, K_TEXT, WindowInfo

Record = dict[str, Any]
SecureProbe = Callable[[], bool | None]

IDLE_FLUSH_US = 2_000_000
SECURE_PLACEHOLDER = "[SECURE]"

# window titles that mean "you are typing a password / one-time code here"
SECURE_TITLE_RE = re.compile(
    r"(?i)(pass(word|phrase|wort|code)|mot de passe|contrase[ñn]a|\bpin\b|"
    r"sign[ -]?in|log[ -]?in|anmelden|one[- ]time (code|password)|verification code|"
    r"\b2fa\b|\botp\b|authentication required|unlock|keyring|\bsudo\b)"
)

_FLUSH_KEYS = frozenset(
    {"enter", "return", "tab", "esc", "escape", "up", "down", "page_up", "page_down",
     "home", "end", "insert", "kp_enter"}
)  # fmt: skip
_SHORTCUT_MODS = frozenset({"ctrl", "alt", "super"})


class TextBuffer:
    """Text typed into one window since the last flush, with a cursor."""

    __slots__ = ("chars", "cursor", "secure", "t_first", "t_last", "win")

    def __init__(self, win: int | None, t: int) -> None:
        self.win = win
        self.chars: list[str] = []
        self.cursor = 0
        self.t_first = t
        self.t_last = t
        self.secure = False

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def type(self, ch: str) -> None:
        self.chars.insert(self.cursor, ch)
        self.cursor += 1

    def backspace(self) -> bool:
        """Delete before the cursor; False when that text was already flushed."""
        if self.cursor == 0:
            return False
        self.cursor -= 1
        del self.chars[self.cursor]
        return True

    def delete(self) -> bool:
        if self.cursor >= len(self.chars):
            return False
        del self.chars[self.cursor]
        return True

    def left(self) -> bool:
        if self.cursor == 0:
            return False
        self.cursor -= 1
        return True

    def right(self) -> bool:
        if self.cursor >= len(self.chars):
            return False
        self.cursor += 1
        return True

    def split_point(self, keep_tail: int) -> int:
        """Index of a space to cut at keeping >= ``keep_tail`` chars, not between digits."""
        chars = self.chars
        for i in range(len(chars) - keep_tail, 0, -1):
            if chars[i].isspace():
                before = chars[i - 1]
                after = chars[i + 1] if i + 1 < len(chars) else ""
                if not (before.isdigit() or after.isdigit() or before.isspace()):
                    return i
        return 0


class KeyFilter:
    """Rewrites key records before they are written; in ``full`` mode also emits ``text``.

    ``key`` takes the key record the :class:`~deskcorder.capture.redact.KeyRedactor`
    built (with ``ch``/``vk`` in full mode) and returns the records to write.
    """

    def __init__(
        self,
        mode: str,
        *,
        secure_probe: SecureProbe | None = None,
        secure_poll: SecureProbe | None = None,
        scrubber: Callable[[str], str] = safe_scrub,
        max_chars: int = 256,
        keep_tail: int = 48,
        idle_us: int = IDLE_FLUSH_US,
        title_rule: bool = True,
    ) -> None:
        if max_chars <= keep_tail:
            raise ValueError("max_chars must be larger than keep_tail")
        self.mode = mode
        self.text_mode = mode == "full"
        self.secure_probe = secure_probe
        # a fresh (uncached) probe, asked once more when text is flushed: closes the
        # window in which the cached answer lags behind a focus change
        self.secure_poll = secure_poll
        self.scrubber = scrubber
        self.max_chars = max_chars
        self.keep_tail = keep_tail
        self.idle_us = idle_us
        self.title_rule = title_rule
        self.buf: TextBuffer | None = None
        self.texts_written = 0
        self._title_win: WindowInfo | None = None
        self._title_secure = False
        self.secure_drops = 0

    # -- secure input ------------------------------------------------------------
    def is_secure(self, window: WindowInfo | None) -> bool:
        """Password field or sign-in window? A failing probe counts as secure."""
        if self.title_rule and window is not None and window.title:
            if window is not self._title_win:  # WindowInfo is immutable: cache per object
                self._title_win = window
                self._title_secure = SECURE_TITLE_RE.search(window.title) is not None
            if self._title_secure:
                return True
        if self.secure_probe is None:
            return False
        try:
            value = self.secure_probe()
        except Exception:
            return True
        return value is None or bool(value)  # unknown = secure (fail closed)

    # -- records -----------------------------------------------------------------
    def key(self, record: Record, window: WindowInfo | None) -> list[Record]:
        out: list[Record] = []
        t: int = record["t"]
        win_id = window.id if window is not None else None
        buf = self.buf
        if buf is not None and (buf.win != win_id or t - buf.t_last > self.idle_us):
            out += self.flush(t)
        if "cls" in record:  # a printable key: only its class is ever written
            ch = record.get("ch")
            down = record["k"] == K_KEY_DOWN
            if self.is_secure(window):
                self.secure_drops += 1
                if self.text_mode and down:
                    self._buffer(win_id, t).secure = True
                return out
            if self.text_mode and down and isinstance(ch, str):
                buf = self._buffer(win_id, t)
                buf.type(ch)
                buf.t_last = t
                if len(buf) > self.max_chars:
                    out += self._flush_head(t)
            out.append({"k": record["k"], "t": t, "cls": record["cls"]})
            return out
        record.pop("ch", None)  # never present here; belt and braces
        if self.text_mode and record["k"] == K_KEY_DOWN:
            mods = record.get("mods") or ()
            shortcut = bool(_SHORTCUT_MODS.intersection(mods))
            out += self._edit(record.get("key"), shortcut, t, win_id)
        out.append(record)
        return out

    def _buffer(self, win_id: int | None, t: int) -> TextBuffer:
        if self.buf is None:
            self.buf = TextBuffer(win_id, t)
        return self.buf

    def _edit(self, name: str | None, shortcut: bool, t: int, win_id: int | None) -> list[Record]:
        buf = self.buf
        if buf is None:
            return []
        if shortcut or name in _FLUSH_KEYS:
            return self.flush(t)
        moved = True
        if name == "backspace":
            moved = buf.backspace()
        elif name == "delete":
            moved = buf.delete()
        elif name == "left":
            moved = buf.left()
        elif name == "right":
            moved = buf.right()
        elif name is None or name.startswith(("shift", "ctrl", "alt", "cmd", "super", "caps")):
            return []
        else:  # function keys, menu ... : cursor may have moved, start afresh
            return self.flush(t)
        buf.t_last = t
        if not moved:
            # edits reach into text already written: the buffer no longer mirrors the field
            return self.flush(t)
        return []

    def _flush_head(self, t: int) -> list[Record]:
        buf = self.buf
        assert buf is not None
        cut = buf.split_point(self.keep_tail)
        if cut <= 0 or buf.cursor < cut:
            return self.flush(t)
        head = "".join(buf.chars[:cut])
        rec = self._text_record(t, head, buf.win, buf.secure)
        del buf.chars[: cut + 1]
        buf.cursor -= cut + 1
        return [rec] if rec else []

    def _text_record(self, t: int, text: str, win: int | None, secure: bool) -> Record | None:
        if text and not secure and self.secure_poll is not None:
            try:
                value = self.secure_poll()
            except Exception:
                value = None
            secure = value is None or bool(value)
        if secure:
            text = SECURE_PLACEHOLDER
        elif not text:
            return None
        else:
            text = self.scrubber(text)
        self.texts_written += 1
        rec: Record = {"k": K_TEXT, "t": t, "text": text}
        if win is not None:
            rec["win"] = win
        return rec

    def flush(self, t: int) -> list[Record]:
        """Write out and forget the buffered text."""
        buf, self.buf = self.buf, None
        if buf is None:
            return []
        rec = self._text_record(t, buf.text, buf.win, buf.secure)
        return [rec] if rec else []

    def tick(self, t: int) -> list[Record]:
        """Flush text idle for longer than ``idle_us`` (called by the pipeline's tick)."""
        buf = self.buf
        if buf is not None and t - buf.t_last > self.idle_us:
            return self.flush(t)
        return []
