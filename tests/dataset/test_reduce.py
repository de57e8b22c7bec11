"""Action reduction on hand-built records: every kind, every threshold edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deskcorder.dataset import Action, Reducer, Thresholds, reduce_records, reduce_session
from deskcorder.events import RAW_BUTTON, RAW_FOCUS, RAW_KEY, RAW_MOVE, RAW_SCROLL, WindowInfo
from tests.core.helpers import make_policy, ms, run_pipeline
from tests.dataset.records import (
    FULL,
    HEADER,
    WIN_A,
    WIN_B,
    bd,
    bu,
    click,
    end,
    focus,
    kd,
    ku,
    mv,
    sc,
    shot,
    start,
    tap,
    text,
    typed,
    us,
)

Rec = dict[str, Any]


def reduce(records: list[Rec], header: Rec | None = None, **thresholds: int) -> list[Action]:
    return list(
        reduce_records(records, header=header or HEADER, thresholds=Thresholds(**thresholds))
    )


def kinds(actions: list[Action]) -> list[str]:
    return [a.kind for a in actions]


# -- clicks ----------------------------------------------------------------------------


def test_single_click_keeps_position_time_window_records_and_code() -> None:
    recs = [*start(), mv(100, (10, 10), (300, 200)), *click(200, 300, 200), end(1000)]
    (a,) = reduce(recs)
    assert (a.kind, a.x, a.y, a.button, a.clicks) == ("click", 300, 200, "left", 1)
    assert (a.t_start, a.t_end) == (us(200), us(260))
    assert a.records == (3, 4)  # start=0, focus=1, mv=2, bd=3, bu=4
    assert a.window is not None and (a.window.title, a.window.app) == ("Editor", "gedit")
    assert a.code == "pyautogui.click(x=300, y=200)"
    assert (a.nx, a.ny) == (round(300 / 1920, 5), round(200 / 1080, 5))
    assert a.screen == (0, 0, 1920, 1080)


@pytest.mark.parametrize(("gap_ms", "want"), [(500, ["double_click"]), (501, ["click", "click"])])
def test_double_click_interval_edge(gap_ms: int, want: list[str]) -> None:
    recs = [*start(), *click(100, 50, 50, hold_ms=40), *click(100 + gap_ms, 50, 50, hold_ms=40)]
    actions = reduce(recs)
    assert kinds(actions) == want
    if want == ["double_click"]:
        assert actions[0].clicks == 2
        assert actions[0].records == (2, 5)
        assert actions[0].code == "pyautogui.doubleClick(x=50, y=50)"


@pytest.mark.parametrize(("dx", "want"), [(4, ["double_click"]), (5, ["click", "click"])])
def test_double_click_distance_edge(dx: int, want: list[str]) -> None:
    recs = [*start(), *click(100, 50, 50), *click(300, 50 + dx, 50)]
    assert kinds(reduce(recs)) == want


def test_triple_click_and_a_fourth_click_starts_again() -> None:
    recs = [*start()]
    for n in range(4):
        recs += click(100 + 200 * n, 80, 90, hold_ms=30)
    actions = reduce(recs)
    assert kinds(actions) == ["triple_click", "click"]
    assert actions[0].code == "pyautogui.tripleClick(x=80, y=90)"


def test_configurable_double_click_interval() -> None:
    recs = [*start(), *click(100, 50, 50), *click(800, 50, 50)]
    assert kinds(reduce(recs)) == ["click", "click"]
    assert kinds(reduce(recs, double_click_ms=700)) == ["double_click"]


def test_right_middle_and_extra_buttons_are_single_clicks() -> None:
    recs = [
        *start(),
        *click(100, 1, 2, "right"),
        *click(200, 1, 2, "right"),
        *click(300, 3, 4, "middle"),
        *click(400, 5, 6, "x1"),
    ]
    actions = reduce(recs)
    assert kinds(actions) == ["right_click", "right_click", "middle_click", "click"]
    assert [a.code for a in actions] == [
        "pyautogui.rightClick(x=1, y=2)",
        "pyautogui.rightClick(x=1, y=2)",
        "pyautogui.middleClick(x=3, y=4)",
        "pyautogui.click(x=5, y=6, button='x1')",
    ]


# -- drags -----------------------------------------------------------------------------


@pytest.mark.parametrize(("dist", "want"), [(5, "click"), (7, "drag")])
def test_drag_distance_edge(dist: int, want: str) -> None:
    recs = [*start(), bd(100, 200, 200), mv(120, (200 + dist, 200)), bu(200, 200 + dist, 200)]
    (a,) = reduce(recs)
    assert a.kind == want
    assert (a.x, a.y) == (200, 200)


def test_drag_keeps_its_path_and_counts_the_furthest_point() -> None:
    # out 30 px and back to 2 px from the start: still a drag (drawing a loop)
    recs = [
        *start(),
        bd(100, 200, 200),
        mv(110, (210, 200), (230, 200), (202, 200)),
        bu(200, 202, 200),
        end(300),
    ]
    (a,) = reduce(recs)
    assert a.kind == "drag"
    assert (a.end_x, a.end_y, a.button) == (202, 200, "left")
    assert a.path == (
        (us(100), 200, 200),
        (us(110), 210, 200),
        (us(118), 230, 200),
        (us(126), 202, 200),
        (us(200), 202, 200),
    )
    assert a.code == (
        "pyautogui.moveTo(x=200, y=200); "
        "pyautogui.dragTo(x=202, y=200, duration=0.1, button='left')"
    )


def test_drag_after_a_click_does_not_join_the_click() -> None:
    recs = [*start(), *click(100, 50, 50), bd(300, 50, 50), mv(310, (90, 50)), bu(400, 90, 50)]
    assert kinds(reduce(recs)) == ["click", "drag"]


def test_configurable_drag_distance() -> None:
    recs = [*start(), bd(100, 0, 0), bu(200, 9, 0)]
    assert kinds(reduce(recs)) == ["drag"]
    assert kinds(reduce(recs, drag_px=10)) == ["click"]


# -- scrolls -------------------------------------------------------------------------


def test_scroll_burst_is_one_action_with_totals() -> None:
    recs = [*start(), sc(100), sc(150), sc(200), sc(700), sc(760, dx=1, dy=0)]
    (a,) = reduce(recs)
    assert (a.kind, a.dx, a.dy, a.count) == ("scroll", 1, -4, 5)
    assert (a.t_start, a.t_end) == (us(100), us(760))
    assert a.code == "pyautogui.scroll(-4, x=500, y=400); pyautogui.hscroll(1, x=500, y=400)"


@pytest.mark.parametrize(("gap_ms", "n"), [(700, 1), (701, 2)])
def test_scroll_pause_edge(gap_ms: int, n: int) -> None:
    assert len(reduce([*start(), sc(100), sc(100 + gap_ms)])) == n


def test_scroll_reversal_splits() -> None:
    actions = reduce([*start(), sc(100, dy=-1), sc(150, dy=-1), sc(200, dy=1)])
    assert [(a.kind, a.dy) for a in actions] == [("scroll", -2), ("scroll", 1)]


# -- typing and keys ---------------------------------------------------------------------


def test_typing_in_redacted_mode_is_a_key_class_pattern() -> None:
    recs = [*start(), *typed(100, "LLLL DD"), end(3000)]
    (a,) = reduce(recs)
    assert (a.kind, a.text, a.count, a.redacted) == ("type", "LLLL DD", 7, True)
    assert a.code == "pyautogui.write('LLLL DD')"
    assert a.x is None and a.nx is None


def test_shift_letter_is_typing_but_shift_tab_is_a_hotkey() -> None:
    recs = [
        *start(),
        kd(100, key="shift_l"),
        kd(110, cls="letter"),
        ku(150, key="shift_l"),
        ku(160, cls="letter"),
        *typed(200, "L"),
        kd(400, key="shift_l"),
        kd(410, key="tab", mods=["shift"]),
        ku(450, key="tab", mods=["shift"]),
        ku(460, key="shift_l"),
    ]
    actions = reduce(recs)
    assert [(a.kind, a.text, a.keys) for a in actions] == [
        ("type", "LL", ()),
        ("hotkey", None, ("shift", "tab")),
    ]
    assert actions[1].t_start == us(400)  # from the modifier's press
    assert actions[1].code == "pyautogui.hotkey('shift', 'tab')"


def test_hotkeys_are_written_ctrl_alt_shift_first() -> None:
    recs = [
        *start(),
        kd(100, key="ctrl_l"),
        kd(110, key="shift_l"),
        kd(120, key="t", mods=["shift", "ctrl"]),
        ku(130, key="t", mods=["shift", "ctrl"]),
        ku(140, key="shift_l"),
        ku(150, key="ctrl_l"),
        kd(300, key="ctrl_r"),
        kd(310, key="s", mods=["ctrl"]),
        ku(320, key="s", mods=["ctrl"]),
        ku(330, key="ctrl_r"),
    ]
    actions = reduce(recs)
    assert [a.keys for a in actions] == [("ctrl", "shift", "t"), ("ctrl", "s")]
    assert actions[1].code == "pyautogui.hotkey('ctrl', 's')"
    assert actions[0].records == (1 + 1, 1 + 3)


def test_special_keys_and_repeats() -> None:
    recs = [*start(), *tap(100, key="down"), *tap(200, key="down"), *tap(300, key="enter")]
    recs += tap(2400, key="enter")  # a pause longer than typing_pause_ms: a new action
    actions = reduce(recs)
    assert [(a.keys, a.count) for a in actions] == [
        (("down",), 2),
        (("enter",), 1),
        (("enter",), 1),
    ]
    assert actions[0].code == "pyautogui.press('down', presses=2)"
    assert reduce([*start(), *tap(10, key="page_up")])[0].code == "pyautogui.press('pageup')"


def test_lone_alt_or_super_tap_is_a_key_but_lone_shift_is_not() -> None:
    recs = [*start(), *tap(100, key="alt_l"), *tap(300, key="shift_r"), *tap(500, key="cmd")]
    actions = reduce(recs)
    assert [(a.kind, a.keys) for a in actions] == [("key", ("alt",)), ("key", ("super",))]
    assert actions[1].code == "pyautogui.press('win')"


def test_backspace_while_typing_edits_the_pattern_else_is_a_key() -> None:
    recs = [*start(), *typed(100, "LLL"), *tap(500, key="backspace"), *typed(600, "D")]
    recs += [*tap(3000, key="backspace")]
    actions = reduce(recs)
    assert [(a.kind, a.text, a.keys) for a in actions] == [
        ("type", "LLD", ()),
        ("key", None, ("backspace",)),
    ]


@pytest.mark.parametrize(("pause_ms", "n"), [(2000, 1), (2001, 2)])
def test_typing_pause_edge(pause_ms: int, n: int) -> None:
    recs = [*start(), *typed(100, "L"), *typed(100 + pause_ms, "L")]
    assert len(reduce(recs)) == n


def test_typing_across_a_focus_change_is_two_actions_in_their_windows() -> None:
    recs = [*start(), *typed(100, "LL"), focus(400, WIN_B), *typed(500, "DD")]
    actions = reduce(recs)
    assert [(a.text, a.window and a.window.title) for a in actions] == [
        ("LL", "Editor"),
        ("DD", "Browser"),
    ]
    assert {a.episode for a in actions} == {0}


def test_a_title_change_while_typing_is_the_same_window() -> None:
    recs = [*start(), *typed(100, "LL"), {"k": "title", "t": us(200), "id": 11, "title": "*Ed"}]
    recs += typed(300, "L")
    (a,) = reduce(recs)
    assert a.text == "LLL"


def test_full_mode_text_comes_from_the_text_record() -> None:
    recs = [
        *start(),
        *typed(100, "LLLLL"),
        *tap(800, key="backspace"),
        text(1000, "hell"),
        *tap(1000, key="enter"),
        end(2000),
    ]
    actions = reduce(recs, header=FULL)
    assert [(a.kind, a.text, a.redacted, a.keys) for a in actions] == [
        ("type", "hell", False, ()),
        ("key", None, False, ("enter",)),
    ]
    assert actions[0].code == "pyautogui.write('hell')"
    assert actions[0].t_start == us(100)


def test_full_mode_text_flushed_after_a_later_action_keeps_start_order() -> None:
    # typing, a scroll 1 s later, then the 2 s idle flush writes the text
    recs = [*start(), *typed(100, "LL"), sc(1200), text(2300, "hi"), end(3000)]
    actions = reduce(recs, header=FULL)
    assert [(a.kind, a.text) for a in actions] == [("type", "hi"), ("scroll", None)]


def test_secure_input_text_without_keys_is_kept_as_such() -> None:
    recs = [*start(), text(500, "[SECURE]"), text(900, "stale")]
    actions = reduce(recs, header=FULL)
    assert [(a.kind, a.text, a.count) for a in actions] == [("type", "[SECURE]", 0)]


def test_text_is_escaped_in_code() -> None:
    recs = [*start(), *typed(100, "L"), text(300, 'it\'s "x"\n')]
    (a,) = reduce(recs, header=FULL)
    assert a.code == "pyautogui.write('it\\'s \"x\"\\n')"


# -- episodes -----------------------------------------------------------------------------


def test_a_pause_in_the_middle_of_typing_splits_episodes() -> None:
    recs = [
        *start(),
        *typed(100, "LL"),
        {"k": "pause", "t": us(400), "src": "user"},
        *typed(500, "DDDD"),  # never written by the agent; ignored if present
        {"k": "resume", "t": us(900), "src": "user"},
        focus(900, WIN_A),
        *typed(1000, "P"),
    ]
    actions = reduce(recs)
    assert [(a.episode, a.text) for a in actions] == [(0, "LL"), (1, "P")]


def test_nothing_from_an_excluded_period_appears() -> None:
    recs = [
        *start(),
        *click(100, 10, 10),
        {"k": "excl", "t": us(200), "rule": "private_browsing"},
        *click(300, 20, 20),
        shot(350, "e"),
        *typed(400, "LLL"),
        focus(1000, WIN_B),
        *click(1100, 30, 30),
    ]
    actions = reduce(recs)
    assert [(a.episode, a.x, a.window and a.window.id) for a in actions] == [
        (0, 10, 11),
        (1, 30, 22),
    ]
    assert all(a.observation is None for a in actions)


@pytest.mark.parametrize(
    ("cause", "episodes"), [("queue_full", [0, 1]), ("screenshot_skip", [0, 0])]
)
def test_gaps_that_lose_input_split_episodes(cause: str, episodes: list[int]) -> None:
    recs = [*start(), *click(100, 1, 1), {"k": "gap", "t": us(150), "cause": cause, "dropped": 3}]
    recs += click(2000, 2, 2)
    assert [a.episode for a in reduce(recs)] == episodes


def test_a_press_cut_by_a_pause_is_dropped() -> None:
    recs = [*start(), bd(100, 1, 1), {"k": "pause", "t": us(150), "src": "lock"}]
    recs += [{"k": "resume", "t": us(500), "src": "lock"}, bu(600, 1, 1), *click(700, 5, 5)]
    actions = reduce(recs)
    assert [(a.episode, a.x) for a in actions] == [(0, 5)]


# -- observations ----------------------------------------------------------------------------


def test_exact_pre_action_frame_is_the_observation_and_the_click_shot_the_after() -> None:
    recs = [
        *start(),
        shot(50, "a", "focus"),
        *click(100, 300, 200),
        shot(130, "b", "click"),
        shot(140, "c", "pre_action", act=us(100), age=us(30)),
        *click(2000, 10, 10),
        end(5000),
    ]
    actions = reduce(recs, header={**HEADER, "pre_action": True})
    first = actions[0]
    assert first.observation is not None and first.observation.sha256 == "c" * 64
    assert first.observation.exact and first.observation.t == us(70)
    assert first.observation_age_us == us(30)
    assert first.after is not None and first.after.sha256 == "b" * 64
    # no pre-action frame for the second click: the latest earlier screenshot stands in
    second = actions[1]
    assert second.observation is not None and second.observation.sha256 == "b" * 64
    assert not second.observation.exact
    assert second.observation_age_us == us(2000 - 130)


def test_waiting_for_a_pre_action_frame_is_bounded() -> None:
    reducer = Reducer(Thresholds(observation_wait_ms=1000), pre_action=True)
    for rec in [*start(), *click(100, 1, 1), *click(900, 50, 50)]:
        reducer.feed(rec)
    assert reducer.out == []  # the first click may still get its frame
    reducer.feed(sc(1101))
    assert [a.x for a in reducer.out] == [1]


def test_without_pre_action_frames_actions_stream_out_at_once() -> None:
    reducer = Reducer()
    for rec in [*start(), *click(100, 1, 1), sc(900), sc(2000)]:
        reducer.feed(rec)
    assert kinds(reducer.out) == ["click", "scroll"]


def test_normalised_to_the_observation_area() -> None:
    recs = [
        *start(),
        {**shot(10, "m", "focus"), "mon": [1920, 0, 1280, 1024]},
        *click(100, 1920 + 640, 256),
    ]
    header = {"keystrokes": "redacted", "screen": [[0, 0, 1920, 1080], [1920, 0, 1280, 1024]]}
    (a,) = reduce(recs, header=header)
    assert (a.nx, a.ny, a.screen) == (0.5, 0.25, (1920, 0, 1280, 1024))


# -- hover ----------------------------------------------------------------------------------


def test_hover_is_a_move_only_when_enabled_and_not_before_a_click_there() -> None:
    recs = [
        *start(),
        mv(100, (10, 10), (100, 100)),
        mv(2000, (400, 400)),  # rested 1.9 s at (100, 100), then moved on
        *click(2100, 400, 400),  # rested 92 ms at (400, 400): the approach to a click
        end(5000),
    ]
    assert kinds(reduce(recs)) == ["click"]
    actions = reduce(recs, hover_ms=1000)
    assert kinds(actions) == ["move", "click"]
    move = actions[0]
    assert (move.x, move.y, move.t_end) == (100, 100, us(108))
    assert move.code == "pyautogui.moveTo(x=100, y=100)"
    assert move.path[0][1:] == (10, 10)


# -- thresholds and the session reader -----------------------------------------------------


@pytest.mark.parametrize("bad", [{"drag_px": 0}, {"double_click_ms": -1}, {"hover_ms": 1.5}])
def test_bad_thresholds_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="threshold"):
        Thresholds(**bad)


def test_reduce_session_reads_what_the_real_pipeline_wrote(tmp_path: Path) -> None:
    win = WindowInfo(7, "Doc - Editor", "gedit", 100, "gedit", "/usr/bin/gedit", 0, 0, 800, 600)
    raws = [
        (RAW_FOCUS, ms(1), win),
        (RAW_MOVE, ms(10), 100, 100),
        (RAW_MOVE, ms(20), 120, 110),
        (RAW_BUTTON, ms(30), 120, 110, "left", True),
        (RAW_BUTTON, ms(90), 120, 110, "left", False),
        (RAW_BUTTON, ms(300), 121, 110, "left", True),
        (RAW_BUTTON, ms(350), 121, 110, "left", False),
        (RAW_SCROLL, ms(1000), 121, 110, 0, -1),
        (RAW_SCROLL, ms(1100), 121, 110, 0, -1),
        (RAW_KEY, ms(1500), True, "h", None, 104),
        (RAW_KEY, ms(1550), False, "h", None, 104),
        (RAW_KEY, ms(1600), True, None, "ctrl_l", 0xFFE3),
        (RAW_KEY, ms(1610), True, "s", None, 115),
        (RAW_KEY, ms(1650), False, "s", None, 115),
        (RAW_KEY, ms(1660), False, None, "ctrl_l", 0xFFE3),
    ]
    run_pipeline(tmp_path, raws, make_policy(capture={"mouse_move_hz": 0}))
    session = next((tmp_path / "spool" / "sessions").iterdir())
    actions = list(reduce_session(session))
    assert [(a.kind, a.x, a.text, a.keys) for a in actions] == [
        ("double_click", 120, None, ()),
        ("scroll", 121, None, ()),
        ("type", None, "L", ()),
        ("hotkey", None, None, ("ctrl", "s")),
    ]
    assert actions[0].window is not None and actions[0].window.title == "Doc - Editor"


def test_a_click_carries_the_element_of_its_el_record() -> None:
    header = {**HEADER, "elements": 1}
    button = {"role": "push button", "name": "Send", "rect": [10, 20, 80, 30],
              "path": ["frame", "push button"]}  # fmt: skip
    el = {"k": "el", "src": "click", "win": 11, **button}
    recs = [*start(), *click(200, 30, 40), {**el, "t": us(300), "act": us(200)}]
    # a second click whose element came late (after the next action began) and a third
    # whose element never came; the focus element names no click
    recs += [*click(1000, 500, 40), *click(1300, 700, 40), {**el, "t": us(1400), "act": us(1000)}]
    recs += [{**el, "t": us(1450), "src": "focus", "act": None}, *click(3000, 900, 40), end(4000)]
    actions = reduce(recs, header)
    assert kinds(actions) == ["click"] * 4
    first, second, third, fourth = actions
    assert first.element is not None and first.element.role == "push button"
    assert (first.element.name, first.element.rect) == ("Send", (10, 20, 80, 30))
    assert first.as_dict()["element"] == {**{k: v for k, v in button.items()}}
    assert second.element is not None and second.element.name == "Send"
    assert third.element is None and fourth.element is None


def test_a_click_waits_for_its_element_only_when_the_session_records_elements() -> None:
    el = {"k": "el", "src": "click", "win": 11, "role": "link", "t": us(1400), "act": us(1000)}
    before = [*start(), *click(1000, 500, 40), *click(1300, 700, 40)]
    for header, waits in (({**HEADER, "elements": 1}, True), (HEADER, False)):
        reducer = Reducer()
        reducer.header(header)
        for rec in before:
            reducer.feed(rec)
        assert (reducer.out == []) is waits  # the first click is not final before its el
        reducer.feed(el)
        reducer.finish()
        assert [a.element is not None for a in reducer.out] == [waits, False]
