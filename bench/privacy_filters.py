"""Cost of the privacy filters per event (prints figures; not a timed test).

    .venv/bin/python bench/privacy_filters.py [--quick]

Baseline in the same run: ``json.dumps`` of one key record, the least the
pipeline does for any key it writes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from deskcorder.capture.gates import Gates
from deskcorder.capture.redact import KeyRedactor
from deskcorder.capture.schedule import WorkHours
from deskcorder.capture.scrub import scrub
from deskcorder.capture.textbuf import KeyFilter
from deskcorder.events import WindowInfo
from deskcorder.policy.model import Policy, Schedule

PROSE = (
    "Meeting notes: ship v2 on Friday. Ask jane.doe@example.com about the invoice, "
    "card 4111 1111 1111 1111 was charged twice; call +1 415 555 2671 tomorrow. "
    "The quick brown fox jumps over the lazy dog while we refactor the pipeline. "
)
TITLES = [
    "notes.txt - Editor",
    "Inbox (3) - jane.doe@example.com - Mail",
    "Pull request #1234 - deskcorder - Chromium",
    "Terminal - ssh build@10.0.0.12",
    "Quarterly report 2026.xlsx - LibreOffice Calc",
]
DIGITS = "card 4111 1111 1111 1111 and call +1 415 555 2671"
NUMBERS = "order 12345678 shipped on 2026-11-27"
WIN = WindowInfo(id=1, title="notes.txt - Editor", app="editor", process="editor")


def per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def keys_cost(mode: str, text: str, rounds: int = 20) -> float:
    rounds = 1 if "--quick" in sys.argv else rounds
    n = 0
    start = time.perf_counter()
    for _ in range(rounds):
        red = KeyRedactor(mode)
        filt = KeyFilter(mode)
        t = 0
        for ch in text:
            t += 80_000
            name, char = ("space", None) if ch == " " else (None, ch)
            for pressed in (True, False):
                fields = red.key(pressed, char, name, ord(ch))
                if fields is not None:
                    filt.key({"k": "kd" if pressed else "ku", "t": t, **fields}, WIN)
                n += 1
            if ch == ".":
                filt.key({"k": "kd", "t": t, "key": "enter"}, WIN)
        filt.flush(t)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    scale = 20 if "--quick" in sys.argv else 1
    print("privacy filter cost per event (this machine, CPython, one core)")
    record = {"k": "kd", "t": 123456, "cls": "letter"}
    base = per_call(lambda: json.dumps(record), 20000 // scale)
    print(f"  baseline: json.dumps of one key record{'':<6}: {base:8.1f} us")
    for mode in ("full", "redacted", "shortcuts"):
        note = " (text buffering + scrubbing amortised)" if mode == "full" else ""
        print(f"  key event, keystrokes={mode:<9}{'':<13}: {keys_cost(mode, PROSE):8.1f} us{note}")
    sentence = "Meeting notes: ship v2 on Friday to the whole team"
    rows: list[tuple[str, Callable[[], object], int]] = [
        ("scrub, 50-char text without digits", lambda: scrub(sentence), 2000),
        ("scrub, text with card and phone", lambda: scrub(DIGITS), 300),
        ("scrub, text with non-phone numbers", lambda: scrub(NUMBERS), 300),
    ]
    for title in TITLES:
        rows.append((f"scrub, title {title[:28]!r}", lambda t=title: scrub(t), 500))  # type: ignore[misc]
    gates = Gates(Policy())
    rows.append(("window exclusion rules per focus", lambda: gates.window_rule(WIN), 20000))
    hours = WorkHours(Schedule(enabled=True, timezone="Europe/Berlin"))
    now = time.time()
    rows.append(("schedule check per tick", lambda: hours.allows(now), 20000))
    for label, fn, n in rows:
        print(f"  {label:<45}: {per_call(fn, max(1, n // scale)):8.1f} us")


if __name__ == "__main__":
    main()
