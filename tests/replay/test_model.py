"""The replay document from hand-built records: steps, spans, bands, screenshots, summary."""

from __future__ import annotations

from typing import Any

import pytest

from deskcorder.replay import ChunkFacts, build_replay, images_of
from deskcorder.replay.model import DRAG_PX, MULTI_CLICK_MS, SHOT_AFTER_MS, TYPING_BREAK_MS

HEADER = {
    "session": "20261127T031500Z-1a2b3c4d",
    "user": "u-1",
    "device": "d-1",
    "keystrokes": "redacted",
    "screen": [[0, 0, 1920, 1080]],
    "clock": {"t": 0, "unix_ns": 1_795_000_000_000_000_000, "utc": "2026-11-19T..."},
}
EDITOR = {"id": 1, "title": "Notes - Editor", "app": "Tk", "process": "python3"}
BROWSER = {"id": 2, "title": "Docs - Browser", "app": "Browser"}
SHA = ["a" * 64, "b" * 64, "c" * 64]


def s(ms: float) -> int:
    """A record time (µs) ``ms`` milliseconds into the session."""
    return int(ms * 1000)


def shot(ms: float, sha: str, reason: str = "click") -> dict[str, Any]:
    return {
        "k": "shot",
        "t": s(ms),
        "sha256": sha,
        "fmt": "webp",
        "w": 1280,
        "h": 720,
        "mon": [0, 0, 1920, 1080],
        "reason": reason,
        "win": 1,
    }


def build(records: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    """Steps from the records themselves (the fallback); actions are tested below."""
    return build_replay([HEADER], records, **{"steps": "records", **kw})


def kinds(doc: dict[str, Any]) -> list[str]:
    return [step["k"] for step in doc["steps"]]


def click(ms: float, x: int, y: int, b: str = "left", up_ms: float = 60) -> list[dict[str, Any]]:
    return [
        {"k": "bd", "t": s(ms), "x": x, "y": y, "b": b},
        {"k": "bu", "t": s(ms + up_ms), "x": x, "y": y, "b": b},
    ]


def test_a_click_is_one_step_with_the_pointer_path_before_it() -> None:
    doc = build(
        [
            {"k": "focus", "t": s(0), "win": EDITOR},
            {
                "k": "mv",
                "t": s(100),
                "x": 10,
                "y": 10,
                "dt": [16000] * 2,
                "dx": [5, 5],
                "dy": [0, 5],
            },
            *click(200, 20, 15),
        ]
    )
    assert kinds(doc) == ["focus", "click"]
    step = doc["steps"][1]
    assert (step["x"], step["y"], step["button"], step["label"]) == (20, 15, "left", "left click")
    assert step["path"] == [10, 10, 15, 10, 20, 15]
    assert step["rec"] == [2, 3]  # the bd and the bu it folds
    assert step["win"] == 0 and doc["windows"][0]["title"] == "Notes - Editor"


def test_double_click_just_inside_and_outside_the_interval() -> None:
    inside = build([*click(0, 50, 50), *click(60 + MULTI_CLICK_MS, 51, 50)])
    assert kinds(inside) == ["click"] and inside["steps"][0]["n"] == 2
    assert inside["steps"][0]["label"] == "left double click"
    outside = build([*click(0, 50, 50), *click(60 + MULTI_CLICK_MS + 1, 50, 50)])
    assert kinds(outside) == ["click", "click"]
    far = build([*click(0, 50, 50), *click(100, 80, 50)])
    assert kinds(far) == ["click", "click"]


def test_a_drag_keeps_its_path_and_a_small_wobble_stays_a_click() -> None:
    doc = build(
        [
            {"k": "bd", "t": s(0), "x": 100, "y": 100, "b": "left"},
            {"k": "mv", "t": s(20), "x": 120, "y": 110, "dt": [16000], "dx": [30], "dy": [10]},
            {"k": "bu", "t": s(60), "x": 150, "y": 120, "b": "left"},
        ]
    )
    (step,) = doc["steps"]
    assert step["k"] == "drag" and step["to"] == [150, 120]
    assert step["drag"] == [100, 100, 120, 110, 150, 120, 150, 120]
    wobble = build(
        [
            {"k": "bd", "t": s(0), "x": 100, "y": 100, "b": "left"},
            {"k": "bu", "t": s(60), "x": 100 + DRAG_PX, "y": 100, "b": "left"},
        ]
    )
    assert kinds(wobble) == ["click"]


def test_typing_runs_break_on_time_window_and_other_steps() -> None:
    keys = [{"k": "kd", "t": s(i * 100), "cls": c} for i, c in enumerate(["letter"] * 4)]
    keys += [
        {"k": "ku", "t": s(450), "cls": "letter"},
        {"k": "kd", "t": s(500), "cls": "space"},
        {"k": "kd", "t": s(600), "key": "shift_l"},  # a modifier alone: not a step
        {"k": "kd", "t": s(700), "cls": "digit"},
        {"k": "kd", "t": s(800), "key": "backspace"},
        {"k": "kd", "t": s(900), "cls": "punct"},
        {"k": "kd", "t": s(900 + TYPING_BREAK_MS + 1), "cls": "letter"},  # a new run
        {"k": "kd", "t": s(4000), "key": "s", "mods": ["ctrl"]},
        {"k": "kd", "t": s(4100), "key": "enter"},
        {"k": "kd", "t": s(4200), "key": "backspace"},  # alone: a key
    ]
    doc = build(keys)
    assert kinds(doc) == ["type", "type", "hotkey", "key", "key"]
    first, second, hotkey, enter, backspace = doc["steps"]
    assert first["keys"] == "LLLL D\u232bP" and first["n"] == 8
    assert first["label"] == "typing (8 keys)"
    assert second["keys"] == "L"
    assert (hotkey["label"], enter["label"], backspace["label"]) == ("ctrl+s", "enter", "backspace")


def test_typing_in_another_window_is_another_step() -> None:
    doc = build(
        [
            {"k": "focus", "t": s(0), "win": EDITOR},
            {"k": "kd", "t": s(100), "cls": "letter"},
            {"k": "focus", "t": s(200), "win": BROWSER},
            {"k": "kd", "t": s(300), "cls": "letter"},
        ]
    )
    assert kinds(doc) == ["focus", "type", "focus", "type"]
    assert [step.get("win") for step in doc["steps"]] == [0, 0, 1, 1]


def test_scrolls_in_a_row_are_one_step() -> None:
    doc = build(
        [
            {"k": "sc", "t": s(0), "x": 5, "y": 6, "dx": 0, "dy": -1},
            {"k": "sc", "t": s(100), "x": 5, "y": 6, "dx": 0, "dy": -1},
            {"k": "sc", "t": s(200), "x": 5, "y": 6, "dx": 1, "dy": 0},
            {"k": "sc", "t": s(2000), "x": 5, "y": 6, "dx": 0, "dy": 3},
        ]
    )
    assert [step["label"] for step in doc["steps"]] == ["scroll down 2, right 1", "scroll up 3"]


def test_full_mode_text_is_a_step_with_the_scrubbed_text() -> None:
    doc = build([{"k": "text", "t": s(10), "text": "mail me at [EMAIL]", "win": 1}])
    (step,) = doc["steps"]
    assert step["k"] == "text" and step["text"] == "mail me at [EMAIL]"


def test_pause_lock_exclusion_and_gap_spans() -> None:
    doc = build(
        [
            {"k": "focus", "t": s(0), "win": EDITOR},
            {"k": "pause", "t": s(1000), "src": "user"},
            {"k": "resume", "t": s(4000), "src": "user"},
            {"k": "focus", "t": s(4000), "win": EDITOR},
            {"k": "excl", "t": s(5000), "rule": "private_browsing"},
            {"k": "focus", "t": s(7000), "win": BROWSER},
            {"k": "pause", "t": s(8000), "src": "lock"},
            {"k": "resume", "t": s(9000), "src": "lock"},
            {"k": "gap", "t": s(9500), "cause": "queue_full", "dropped": 12},
            {"k": "pause", "t": s(10000), "src": "schedule"},
            {"k": "kd", "t": s(10500), "key": "f5"},  # not recorded in reality; ends the session
        ]
    )
    spans = [(sp["kind"], sp["t0"], sp["t1"], sp["label"]) for sp in doc["spans"]]
    assert spans == [
        ("pause", 1000, 4000, "paused (user)"),
        ("excluded", 5000, 7000, "excluded window (private_browsing)"),
        ("lock", 8000, 9000, "screen locked"),
        ("gap", 9500, 9500, "gap: queue_full, 12 events lost"),
        ("pause", 10000, 10500, "paused (schedule)"),
    ]
    assert doc["spans"][-1]["open"] is True
    bands = doc["bands"]
    assert bands == [[0, 1000, 0], [4000, 5000, 0], [7000, 8000, 1], [9000, 10000, 1]]
    excluded = next(step for step in doc["steps"] if step["k"] == "excluded")
    assert "win" not in excluded and excluded["cause"] == "private_browsing"
    summary = doc["summary"]
    assert (summary["pauses"], summary["exclusions"], summary["gaps"], summary["dropped"]) == (
        3,
        1,
        1,
        12,
    )


def test_an_excluded_window_leaves_no_title_anywhere() -> None:
    doc = build(
        [
            {"k": "focus", "t": s(0), "win": EDITOR},
            {"k": "excl", "t": s(100), "rule": "title"},
            {"k": "title", "t": s(200), "id": 1, "title": "renamed while excluded"},
        ]
    )
    assert "renamed while excluded" not in repr(doc)


def test_title_changes_rename_the_focused_window_only() -> None:
    doc = build(
        [
            {"k": "focus", "t": s(0), "win": BROWSER},
            {"k": "title", "t": s(100), "id": 2, "title": "Docs (page 2) - Browser"},
            {"k": "title", "t": s(200), "id": 99, "title": "a background window"},
        ]
    )
    assert kinds(doc) == ["focus", "title"]
    assert [w["title"] for w in doc["windows"]] == ["Docs - Browser", "Docs (page 2) - Browser"]
    assert doc["steps"][1]["win"] == 1


def test_each_step_shows_its_own_screenshot_or_the_last_one_before_it() -> None:
    doc = build(
        [
            {"k": "focus", "t": s(0), "win": EDITOR},
            *click(1000, 10, 10),
            shot(1040, SHA[0]),
            {"k": "kd", "t": s(2000), "cls": "letter"},
            *click(2000 + SHOT_AFTER_MS + 500, 10, 10),
            shot(2000 + SHOT_AFTER_MS + 500 + SHOT_AFTER_MS + 1, SHA[1]),  # too late to be its own
            {"k": "excl", "t": s(9000), "rule": "app"},
            {"k": "focus", "t": s(9500), "win": EDITOR},
            shot(9600, SHA[0], "focus"),
        ]
    )
    steps = doc["steps"]
    assert kinds(doc) == ["focus", "click", "type", "click", "excluded", "focus"]
    assert "shot" not in steps[0]  # none yet
    assert (steps[1]["shot"], steps[1]["shot_dt"]) == (0, 40)
    assert (steps[2]["shot"], steps[2]["shot_dt"]) == (0, -960)
    assert (steps[3]["shot"], steps[3]["shot_dt"]) == (0, 1040 - 5500)
    assert "shot" not in steps[4]  # nothing recorded of an excluded window
    assert steps[5]["shot"] == 2
    assert images_of(doc) == [(SHA[0], "webp"), (SHA[1], "webp")]
    assert doc["summary"]["screenshots"] == 3 and doc["summary"]["images"] == 2


def test_lead_in_sets_the_window_and_pause_but_shows_nothing() -> None:
    lead = [
        {"k": "focus", "t": s(0), "win": EDITOR},
        *click(100, 1, 1),
        {"k": "pause", "t": s(500), "src": "user"},
    ]
    doc = build(
        [{"k": "resume", "t": s(2000), "src": "user"}, {"k": "kd", "t": s(2100), "cls": "letter"}],
        lead_in=lead,
    )
    assert kinds(doc) == ["resume", "type"]
    assert doc["spans"] == [
        {"kind": "pause", "t0": 2000, "t1": 2000, "label": "paused (user)", "cause": "user"}
    ]
    assert doc["steps"][1]["win"] == 0
    assert doc["summary"]["records"] == 2 and doc["t0"] == 2000


def test_summary_and_activity() -> None:
    doc = build(
        [
            {"k": "start", "t": 0},
            {"k": "mv", "t": s(0), "x": 1, "y": 1, "dt": [16000] * 9, "dx": [1] * 9, "dy": [0] * 9},
            *click(1500, 1, 1),
            {"k": "end", "t": s(3200), "reason": "stop"},
        ],
        chunks=[ChunkFacts(seq=0, bytes=1234)],
        image_bytes={},
    )
    summary = doc["summary"]
    assert summary["events"] == 12  # 10 positions + bd + bu
    assert summary["duration_ms"] == 3200 and summary["chunk_bytes"] == 1234
    assert summary["by_kind"] == {"bd": 1, "bu": 1, "end": 1, "mv": 10, "start": 1}
    assert doc["activity"] == {"bucket_ms": 1000, "t0": 0, "counts": [10, 2, 0, 0]}
    assert doc["session"]["clock"] == {"t": 0, "unix_ms": 1_795_000_000_000}


def test_a_long_session_gets_coarser_activity_buckets() -> None:
    day = 24 * 3600 * 1000
    doc = build([{"k": "kd", "t": 0, "cls": "letter"}, {"k": "kd", "t": s(day), "cls": "letter"}])
    activity = doc["activity"]
    assert activity["bucket_ms"] == 5000
    assert sum(activity["counts"]) == 2 and len(activity["counts"]) <= 20_000


def test_unknown_kinds_and_missing_fields_do_not_break_it() -> None:
    doc = build(
        [
            {"k": "hover", "t": 5},
            {"k": "bu", "t": s(1), "x": 3, "y": 4, "b": "left"},
            {"k": "focus", "t": s(2), "win": None},
        ]
    )
    assert kinds(doc) == ["release", "focus"]
    assert doc["steps"][1]["label"] == "window: unknown window"


# --- steps from the action reduction (deskcorder.dataset) ----------------------------------


def test_actions_are_the_steps_between_the_context_steps() -> None:
    records = [
        {"k": "start", "t": 0},
        {"k": "focus", "t": s(10), "win": EDITOR},
        {"k": "mv", "t": s(100), "x": 10, "y": 10, "dt": [16000] * 2, "dx": [5, 5], "dy": [0, 5]},
        *click(200, 20, 15),
        shot(240, SHA[0]),
        *click(300, 20, 15),  # a double click
        {"k": "bd", "t": s(1500), "x": 100, "y": 100, "b": "left"},
        {"k": "mv", "t": s(1520), "x": 120, "y": 110, "dt": [16000], "dx": [30], "dy": [10]},
        {"k": "bu", "t": s(1560), "x": 150, "y": 120, "b": "left"},
        *[{"k": "kd", "t": s(2000 + i * 100), "cls": "letter"} for i in range(3)],
        {"k": "kd", "t": s(2500), "key": "ctrl_l"},
        {"k": "kd", "t": s(2510), "key": "s", "mods": ["ctrl"]},
        {"k": "pause", "t": s(3000), "src": "user"},
        {"k": "resume", "t": s(4000), "src": "user"},
        {"k": "end", "t": s(5000), "reason": "stop"},
    ]
    doc = build_replay([HEADER], records)
    assert doc["source"] == "actions"
    labels = [(step["k"], step["label"]) for step in doc["steps"]]
    assert labels == [
        ("start", "session started"),
        ("focus", "window: Notes - Editor (Tk)"),
        ("double_click", "double click"),
        ("drag", "left drag"),
        ("type", "typing (3 keys)"),
        ("hotkey", "ctrl+s"),
        ("pause", "paused (user)"),
        ("resume", "recording resumed"),
        ("end", "session ended (stop)"),
    ]
    double, drag, typing, hotkey = doc["steps"][2:6]
    assert (double["x"], double["y"], double["n"]) == (20, 15, 2)
    assert double["code"] == "pyautogui.doubleClick(x=20, y=15)"
    assert double["path"] == [10, 10, 15, 10, 20, 15]  # the pointer's way to the click
    assert double["rec"] == [3, 7] and double["win"] == 0
    assert (double["shot"], double["shot_role"]) == (0, "after")
    assert drag["to"] == [150, 120] and drag["drag"][:2] == [100, 100]
    assert drag["drag"][-2:] == [150, 120]
    assert typing["keys"] == "LLL" and typing["n"] == 3
    assert hotkey["key"] == "ctrl+s" and hotkey["code"] == "pyautogui.hotkey('ctrl', 's')"
    assert doc["summary"]["steps"] == 9


def test_full_mode_typing_is_one_action_with_its_scrubbed_text() -> None:
    records = [
        {"k": "focus", "t": 0, "win": EDITOR},
        *[{"k": "kd", "t": s(100 + i * 100), "cls": "letter"} for i in range(4)],
        {"k": "kd", "t": s(600), "key": "enter"},
        {"k": "text", "t": s(600), "text": "mail [EMAIL]", "win": 1},
    ]
    doc = build_replay([{**HEADER, "keystrokes": "full"}], records)
    typed = [step for step in doc["steps"] if step["k"] == "type"]
    assert len(typed) == 1 and typed[0]["text"] == "mail [EMAIL]"
    assert typed[0]["label"] == "typed text"


def test_an_exact_pre_action_frame_is_shown_before_the_after_shot() -> None:
    records = [
        {"k": "focus", "t": 0, "win": EDITOR},
        shot(500, SHA[2], "interval"),
        *click(1000, 10, 10),
        {**shot(990, SHA[0], "pre_action"), "t": s(1010), "act": s(1000)},
        shot(1040, SHA[1]),
    ]
    doc = build_replay([{**HEADER, "pre_action": True}], records)
    (step,) = [step for step in doc["steps"] if step["k"] == "click"]
    shots = doc["shots"]
    assert shots[step["shot"]]["sha"] == SHA[0] and step["shot_role"] == "before"
    assert step["exact"] is True
    assert shots[step["alt"]]["sha"] == SHA[1] and step["alt_role"] == "after"


def test_actions_of_a_chunk_count_records_from_its_own_start() -> None:
    lead = [{"k": "focus", "t": 0, "win": EDITOR}, *click(100, 1, 1)]
    doc = build_replay([HEADER], click(2000, 5, 5), lead_in=lead)
    assert [step["k"] for step in doc["steps"]] == ["click"]
    assert doc["steps"][0]["rec"] == [0, 1] and doc["steps"][0]["win"] == 0


def test_records_are_the_fallback_when_the_reduction_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deskcorder.dataset import Reducer

    def broken(self: Reducer, rec: dict[str, Any]) -> None:
        raise RuntimeError("unexpected record")

    monkeypatch.setattr(Reducer, "feed", broken)
    doc = build_replay([HEADER], click(0, 1, 1))
    assert doc["source"] == "records" and [step["k"] for step in doc["steps"]] == ["click"]
    assert doc["warnings"] == [
        "the action reduction failed on these records (RuntimeError: unexpected record); "
        "the steps are the raw records"
    ]


def test_clock_records_are_steps_and_anchors_in_force_from_their_time() -> None:
    """After a suspend or a wall-clock step the page must use the fresh anchor (format.md)."""
    unix0 = HEADER["clock"]["unix_ns"]  # type: ignore[index]
    records = [
        *click(1000, 10, 10),
        {
            "k": "clock",
            "t": s(5000),
            "cause": "step",
            "step_us": -3_600_000_000,
            "clock": {"t": s(5000), "unix_ns": unix0 + 5 * 10**9 - 3600 * 10**9, "utc": "?"},
        },
        {"k": "screen", "t": s(5500), "screen": [[0, 0, 1280, 720], [1280, 0, 640, 720]]},
        {
            "k": "clock",
            "t": s(9000),
            "cause": "suspend",
            "slept_us": 3_900_000_000,
            "clock": {"t": s(9000), "unix_ns": unix0 + 9 * 10**9 - 3600 * 10**9, "utc": "?"},
        },
        *click(10_000, 20, 20),
    ]
    doc = build(records)
    labels = [st["label"] for st in doc["steps"] if st["k"] in ("clock", "screen")]
    assert labels == [
        "the wall clock moved back 1 h 00 min",
        "the screen changed: 1280×720, 640×720",
        "the machine slept for 1 h 05 min",
    ]
    base = unix0 // 10**6
    assert doc["session"]["clocks"] == [
        {"from": 0, "t": 0, "unix_ms": base},
        {"from": 5000, "t": 5000, "unix_ms": base + 5000 - 3_600_000},
        {"from": 9000, "t": 9000, "unix_ms": base + 9000 - 3_600_000},
    ]
    assert "clocks" not in build(click(1000, 10, 10))["session"]  # one anchor: the header's
