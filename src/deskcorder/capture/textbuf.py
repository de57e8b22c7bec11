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

Secure input (the answers of :mod:`deskcorder.capture.a11y`): while the focused
field is a password field, or the window title looks like a sign-in/password
prompt, printable keys leave no record at all (not even their class, which
would tell the password's length) and the buffer's text becomes ``[SECURE]``.
Text is kept only where accessibility identified the focused element as not a
password field: a key typed while the answer is *unknown* (just after a focus
change, in an application without accessibility, in a terminal) is written as
its class and its character is held provisionally; it is kept only if "not a
password field" is published for the same epoch afterwards, and dropped when
that does not happen within the monitor's bound (the text record then reads
``[UNKNOWN]``). A password field focused at any time in a buffer's epoch makes
the whole buffer ``[SECURE]``. Inputs that may move the focus (Tab, Enter,
Escape, function keys, shortcuts; the pipeline adds clicks and window focus
changes) flush the buffer and reset the answer to unknown.

The filter is used in every keystroke mode (secure input drops printable
keys in ``redacted`` mode too); only ``full`` mode buffers text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from deskcorder.capture.a11y import NO_ACCESSIBILITY, FieldAnswers
from deskcorder.capture.scrub import safe_scrub
from deskcorder.events import K_KEY_DOWN, K_TEXT, WindowInfo

Record = dict[str, Any]

IDLE_FLUSH_US = 2_000_000
SECURE_PLACEHOLDER = "[SECURE]"
UNKNOWN_PLACEHOLDER = "[UNKNOWN]"  # typed where no field could be identified in time
MAX_PARKED = 8  # flushed buffers waiting for an answer (each at most the monitor's bound)

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
# keys that edit or move the cursor inside the focused element; any other non-printable
# key (Tab, Enter, Escape, F-keys ...) and any shortcut may move the focus elsewhere
_STAYING_KEYS = frozenset(
    {"backspace", "delete", "left", "right", "up", "down", "home", "end", "page_up",
     "page_down", "insert", "caps_lock", "num_lock", "scroll_lock", "shift", "shift_l",
     "shift_r", "ctrl", "ctrl_l", "ctrl_r", "alt", "alt_l", "alt_r", "alt_gr", "cmd", "cmd_l",
     "cmd_r", "super", "super_l", "super_r", "iso_level3_shift"}
)  # fmt: skip

# verdicts on a flushed buffer
_TEXT, _SECURE, _UNKNOWN, _WAIT, _NOTHING = "text", "secure", "unknown", "wait", "nothing"


def moves_focus(name: str | None, mods: Any) -> bool:
    """May this non-printable key (or shortcut) move the keyboard focus?"""
    if mods and _SHORTCUT_MODS.intersection(mods):
        return True
    return name is not None and name not in _STAYING_KEYS


class TextBuffer:
    """Text typed into one window in one focus epoch since the last flush, with a cursor.

    ``unknown_ns``: when the latest character still awaiting "not a password
    field" was typed (monotonic ns; 0 = every character was typed while that was
    known). ``discarded``: the answer stayed unknown too long; the characters were
    dropped and later ones are not kept.
    """

    __slots__ = (
        "chars", "cursor", "discarded", "epoch", "secure", "t_first", "t_last", "unknown_ns",
        "win",
    )  # fmt: skip

    def __init__(self, win: int | None, t: int, epoch: int = 0) -> None:
        self.win = win
        self.epoch = epoch
        self.chars: list[str] = []
        self.cursor = 0
        self.t_first = t
        self.t_last = t
        self.secure = False
        self.unknown_ns = 0
        self.discarded = False

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

    def discard(self) -> None:
        """Forget the characters (the field was never identified): key kinds only."""
        self.chars.clear()
        self.cursor = 0
        self.discarded = True


class KeyFilter:
    """Rewrites key records before they are written; in ``full`` mode also emits ``text``.

    ``key`` takes the key record the :class:`~deskcorder.capture.redact.KeyRedactor`
    built (with ``ch``/``vk`` in full mode) and returns the records to write.
    ``field`` gives the secure-input answers (:mod:`deskcorder.capture.a11y`).
    """

    def __init__(
        self,
        mode: str,
        *,
        field: FieldAnswers | None = None,
        scrubber: Callable[[str], str] = safe_scrub,
        max_chars: int = 256,
        keep_tail: int = 48,
        idle_us: int = IDLE_FLUSH_US,
        title_rule: bool = True,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if max_chars <= keep_tail:
            raise ValueError("max_chars must be larger than keep_tail")
        self.mode = mode
        self.text_mode = mode == "full"
        self.field = field if field is not None else NO_ACCESSIBILITY
        self.scrubber = scrubber
        self.max_chars = max_chars
        self.keep_tail = keep_tail
        self.idle_us = idle_us
        self.title_rule = title_rule
        self._clock = clock
        self.buf: TextBuffer | None = None
        self.parked: list[TextBuffer] = []  # flushed, waiting for an answer
        self.texts_written = 0
        self.unknown_texts = 0
        self._title_win: WindowInfo | None = None
        self._title_secure = False
        self.secure_drops = 0

    @property
    def pending(self) -> bool:
        """Is any text held (open or parked)? The pipeline then calls :meth:`tick`."""
        return self.buf is not None or bool(self.parked)

    # -- secure input ------------------------------------------------------------
    def secure_title(self, window: WindowInfo | None) -> bool:
        """Does the window's title look like a sign-in or password prompt?"""
        if self.title_rule and window is not None and window.title:
            if window is not self._title_win:  # WindowInfo is immutable: cache per object
                self._title_win = window
                self._title_secure = SECURE_TITLE_RE.search(window.title) is not None
            return self._title_secure
        return False

    # -- records -----------------------------------------------------------------
    def key(self, record: Record, window: WindowInfo | None, ns: int | None = None) -> list[Record]:
        """``ns``: the key's hook time (monotonic), when known."""
        out: list[Record] = []
        t: int = record["t"]
        win_id = window.id if window is not None else None
        buf = self.buf
        if buf is not None and (buf.win != win_id or t - buf.t_last > self.idle_us):
            out += self.flush(t)
        down = record["k"] == K_KEY_DOWN
        if "cls" in record:  # a printable key: only its class is ever written
            now = self._clock()  # before the answer is read (see _type)
            answer = self.field.answer()
            if (
                answer.state is True
                or (ns is not None and self.field.secure_at(ns))
                or self.secure_title(window)
            ):
                self.secure_drops += 1
                if self.text_mode and down:
                    out += self._open(win_id, t, answer.epoch)
                    assert self.buf is not None
                    self.buf.secure = True
                return out
            ch = record.get("ch")
            if self.text_mode and down and isinstance(ch, str):
                out += self._type(ch, t, win_id, answer.epoch, answer.state, now, answer.since_ns)
            out.append({"k": record["k"], "t": t, "cls": record["cls"]})
            return out
        record.pop("ch", None)  # never present here; belt and braces
        if down:
            mods = record.get("mods") or ()
            name = record.get("key")
            if self.text_mode:
                shortcut = bool(_SHORTCUT_MODS.intersection(mods))
                out += self._edit(name, shortcut, t, win_id)
            if moves_focus(name, mods):
                out += self.moved(t, window)
        out.append(record)
        return out

    def moved(self, t: int, window: WindowInfo | None) -> list[Record]:
        """The focus may have moved (a key above, a click, another window): the text so
        far belongs to the element focused before; the answer is unknown again."""
        out = self.flush(t)
        self.field.reset(window)
        return out

    def _open(self, win_id: int | None, t: int, epoch: int) -> list[Record]:
        """Make ``self.buf`` a buffer of this window and epoch (flushing another one)."""
        out: list[Record] = []
        buf = self.buf
        if buf is not None and buf.epoch != epoch:
            out = self.flush(t)
            buf = None
        if buf is None:
            self.buf = TextBuffer(win_id, t, epoch)
        return out

    def _type(
        self,
        ch: str,
        t: int,
        win_id: int | None,
        epoch: int,
        state: bool | None,
        now: int,
        since_ns: int,
    ) -> list[Record]:
        out = self._open(win_id, t, epoch)
        buf = self.buf
        assert buf is not None
        if state is None:  # unknown: held until "not a password field" comes, or dropped
            if buf.discarded or now - since_ns > self.field.bound_ns:
                buf.discard()
            else:
                buf.type(ch)
                buf.unknown_ns = now  # stamped before the answer was read: no lost race
        else:
            if buf.discarded:  # known again: the dropped part ends here
                out += self.flush(t)
                out += self._open(win_id, t, epoch)
                buf = self.buf
                assert buf is not None
            buf.type(ch)
        buf.t_last = t
        if len(buf) > self.max_chars:
            out += self._flush_head(t)
        return out

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
        if not moved and not buf.discarded:
            # edits reach into text already written: the buffer no longer mirrors the field
            return self.flush(t)
        return []

    # -- verdicts ----------------------------------------------------------------
    def _confirmed(self, buf: TextBuffer) -> bool:
        """Was every held character followed by "not a password field" in its epoch?"""
        if buf.unknown_ns:
            info = self.field.info(buf.epoch)
            if info is None or info.safe_ns < buf.unknown_ns:
                return False
            buf.unknown_ns = 0
        return True

    def _may_come(self, buf: TextBuffer) -> bool:
        """May "not a password field" still come for this buffer's epoch (in time)?"""
        answer = self.field.answer()
        return (
            answer.epoch == buf.epoch  # an older epoch gets no new answers
            and answer.state is None
            and self._clock() - answer.since_ns <= self.field.bound_ns
        )

    def _verdict(self, buf: TextBuffer, final: bool) -> str:
        info = self.field.info(buf.epoch)
        if buf.secure or (info is not None and info.secure):
            return _SECURE
        if buf.discarded:
            return _UNKNOWN
        if not buf.chars:
            return _NOTHING
        if self._confirmed(buf):
            return _TEXT
        if not final and self._may_come(buf):
            return _WAIT
        return _UNKNOWN

    def _flush_head(self, t: int) -> list[Record]:
        buf = self.buf
        assert buf is not None
        cut = buf.split_point(self.keep_tail)
        if cut <= 0 or buf.cursor < cut or self._verdict(buf, final=False) != _TEXT:
            return self.flush(t)
        head = "".join(buf.chars[:cut])
        rec = self._text_record(t, head, buf.win, _TEXT)
        del buf.chars[: cut + 1]
        buf.cursor -= cut + 1
        return [rec] if rec else []

    def _text_record(self, t: int, text: str, win: int | None, verdict: str) -> Record | None:
        if verdict == _SECURE:
            text = SECURE_PLACEHOLDER
        elif verdict == _UNKNOWN:
            text = UNKNOWN_PLACEHOLDER
            self.unknown_texts += 1
        elif verdict == _TEXT and text:
            text = self.scrubber(text)
        else:
            return None
        self.texts_written += 1
        rec: Record = {"k": K_TEXT, "t": t, "text": text}
        if win is not None:
            rec["win"] = win
        return rec

    def _judge(self, buf: TextBuffer, t: int, final: bool) -> list[Record]:
        verdict = self._verdict(buf, final)
        if verdict == _WAIT:
            self.parked.append(buf)
            if len(self.parked) <= MAX_PARKED:
                return []
            buf = self.parked.pop(0)
            verdict = self._verdict(buf, final=True)
        rec = self._text_record(t, buf.text, buf.win, verdict)
        return [rec] if rec else []

    def flush(self, t: int) -> list[Record]:
        """Write out (or park, until its field is known) and forget the buffered text."""
        buf, self.buf = self.buf, None
        if buf is None:
            return []
        return self._judge(buf, t, final=False)

    def close(self, t: int) -> list[Record]:
        """Flush everything now; what is still unknown is dropped (pause, session end)."""
        out = self.flush(t)
        parked, self.parked = self.parked, []
        for buf in parked:
            out += self._judge(buf, t, final=True)
        return out

    def tick(self, t: int) -> list[Record]:
        """Called by the pipeline's tick while :attr:`pending`: idle flush (``idle_us``),
        unknown beyond the bound (the held text is dropped), parked verdicts."""
        out: list[Record] = []
        buf = self.buf
        if buf is not None:
            if t - buf.t_last > self.idle_us:
                out += self.flush(t)
            elif (
                buf.unknown_ns
                and not buf.discarded
                and not self._confirmed(buf)
                and not self._may_come(buf)
            ):
                buf.discard()  # unknown beyond the bound: the held text goes now
        if self.parked:
            parked, self.parked = self.parked, []
            for held in parked:
                out += self._judge(held, t, final=False)
        return out
