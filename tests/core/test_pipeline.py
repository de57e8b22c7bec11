"""The pipeline: keystroke modes, move sampling, gates, drops, exclusion, rotation, quota."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deskcorder.capture.pipeline import EventQueue, Pipeline
from deskcorder.events import (
    RAW_BUTTON,
    RAW_CONTROL,
    RAW_FOCUS,
    RAW_KEY,
    RAW_MARK,
    RAW_MOVE,
    RAW_SCROLL,
    RAW_SESSION,
    RAW_TITLE,
    WindowInfo,
    expand_moves,
    validate_record,
)
from deskcorder.storage.chunk import read_chunk
from deskcorder.storage.reader import list_sessions
from deskcorder.storage.spool import Spool
from tests.core.helpers import T0, header, make_policy, ms, run_pipeline

WIN = WindowInfo(
    id=7,
    title="Report.odt - LibreOffice",
    app="libreoffice",
    pid=10,
    process="soffice.bin",
    exe="/usr/lib/libreoffice/program/soffice.bin",
)


def typing(text: str, start: float = 10.0) -> list[tuple[Any, ...]]:
    raws: list[tuple[Any, ...]] = []
    t = start
    for ch in text:
        name = "space" if ch == " " else None
        char = None if ch == " " else ch
        raws.append((RAW_KEY, ms(t), True, char, name, ord(ch)))
        raws.append((RAW_KEY, ms(t + 1), False, char, name, ord(ch)))
        t += 2
    return raws


def ctrl(letter: str, start: float) -> list[tuple[Any, ...]]:
    return [
        (RAW_KEY, ms(start), True, None, "ctrl_l", 0xFFE3),
        (RAW_KEY, ms(start + 1), True, letter, None, ord(letter)),
        (RAW_KEY, ms(start + 2), False, letter, None, ord(letter)),
        (RAW_KEY, ms(start + 3), False, None, "ctrl_l", 0xFFE3),
    ]


def keys(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "t"} for r in records if r["k"] in ("kd", "ku")]


def test_all_records_are_schema_valid_and_framed(tmp_path: Path) -> None:
    raws = [
        (RAW_FOCUS, ms(1), WIN),
        *typing("Hi 1!"),
        (RAW_MOVE, ms(30), 5, 5),
        (RAW_BUTTON, ms(31), 5, 5, "left", True),
        (RAW_SCROLL, ms(32), 5, 5, 0, -1),
    ]
    records = run_pipeline(tmp_path, raws)
    assert records[0]["k"] == "start" and records[-1]["k"] == "end"
    for record in records:
        validate_record(record)
    times = [r["t"] for r in records]
    assert times == sorted(times)


def test_keystrokes_full(tmp_path: Path) -> None:
    records = run_pipeline(
        tmp_path, typing("a1") + ctrl("c", 20), make_policy(capture={"keystrokes": "full"})
    )
    # key records never carry a printable character (nor a keysym spelling it);
    # the typed text is in a scrubbed `text` record (see tests/privacy)
    assert keys(records) == [
        {"k": "kd", "cls": "letter"},
        {"k": "ku", "cls": "letter"},
        {"k": "kd", "cls": "digit"},
        {"k": "ku", "cls": "digit"},
        {"k": "kd", "key": "ctrl_l", "vk": 0xFFE3},
        {"k": "kd", "key": "c", "mods": ["ctrl"]},
        {"k": "ku", "key": "c", "mods": ["ctrl"]},
        {"k": "ku", "key": "ctrl_l", "vk": 0xFFE3},
    ]
    assert [r["text"] for r in records if r["k"] == "text"] == ["a1"]


def test_keystrokes_redacted_keeps_classes_names_and_shortcuts_only(tmp_path: Path) -> None:
    raws = (
        typing("aZ5 ;")
        + ctrl("c", 30)
        + [
            (RAW_KEY, ms(40), True, None, "enter", 0xFF0D),
            (RAW_KEY, ms(41), False, None, "enter", 0xFF0D),
        ]
    )
    records = run_pipeline(tmp_path, raws)  # default policy: redacted
    downs = [r for r in keys(records) if r["k"] == "kd"]
    assert downs == [
        {"k": "kd", "cls": "letter"},
        {"k": "kd", "cls": "letter"},
        {"k": "kd", "cls": "digit"},
        {"k": "kd", "cls": "space"},
        {"k": "kd", "cls": "punct"},
        {"k": "kd", "key": "ctrl_l"},
        {"k": "kd", "key": "c", "mods": ["ctrl"]},
        {"k": "kd", "key": "enter"},
    ]
    assert not any("ch" in r or "vk" in r for r in records)
    blob = repr(records)
    for secret in ("'a'", "'Z'", "'5'", "';'"):
        assert secret not in blob


def test_keystrokes_shortcuts_and_off(tmp_path: Path) -> None:
    raws = typing("abc") + ctrl("v", 20)
    shortcuts = run_pipeline(tmp_path / "s", raws, make_policy(capture={"keystrokes": "shortcuts"}))
    assert [r for r in keys(shortcuts) if r["k"] == "kd"] == [
        {"k": "kd", "key": "ctrl_l"},
        {"k": "kd", "key": "v", "mods": ["ctrl"]},
    ]
    off = run_pipeline(tmp_path / "o", raws, make_policy(capture={"keystrokes": "off"}))
    assert keys(off) == []


def test_modifier_state_tracked_per_physical_key(tmp_path: Path) -> None:
    raws = [
        (RAW_KEY, ms(1), True, None, "shift_l", 1),
        (RAW_KEY, ms(2), True, None, "shift_r", 2),
        (RAW_KEY, ms(3), False, None, "shift_l", 1),
        (RAW_KEY, ms(4), True, "A", None, 65),  # right shift still held
        (RAW_KEY, ms(5), False, None, "shift_r", 2),
        (RAW_KEY, ms(6), True, "a", None, 97),
    ]
    records = run_pipeline(tmp_path, raws, make_policy(capture={"keystrokes": "full"}))
    assert [r["text"] for r in records if r["k"] == "text"] == ["Aa"]
    from deskcorder.capture.redact import KeyRedactor

    red = KeyRedactor("full")
    red.key(True, None, "shift_l", 1)
    red.key(True, None, "shift_r", 2)
    red.key(False, None, "shift_l", 1)
    assert red.key(True, "A", None, 65) == {"cls": "letter", "ch": "A", "mods": ["shift"]}
    red.key(False, None, "shift_r", 2)
    assert red.key(True, "a", None, 97) == {"cls": "letter", "ch": "a"}


def test_move_sampling_keeps_exact_positions_around_clicks(tmp_path: Path) -> None:
    raws: list[tuple[Any, ...]] = [(RAW_MOVE, ms(i), i, 2 * i) for i in range(0, 100)]  # 1 kHz
    raws += [(RAW_BUTTON, ms(99.5), 99, 198, "left", True)]
    raws += [(RAW_MOVE, ms(100 + i), 100 + i, 0) for i in range(0, 50)]
    raws += [(RAW_SCROLL, ms(150), 149, 0, 0, 1)]
    records = run_pipeline(tmp_path, raws, make_policy(capture={"mouse_move_hz": 50}))
    points = [p for r in records if r["k"] == "mv" for p in expand_moves(r)]
    assert 8 <= len(points) <= 12  # ~150 ms at 50 Hz, plus the kept ones
    xs = [x for _, x, _ in points]
    assert 99 in xs  # exact position right before the button
    assert 100 in xs  # first position after the button
    assert 149 in xs  # right before the scroll
    order = [(r["k"], r["t"]) for r in records if r["k"] in ("mv", "bd", "sc")]
    assert [k for k, _ in order] == ["mv", "bd", "mv", "sc"]
    every = run_pipeline(tmp_path / "all", raws, make_policy(capture={"mouse_move_hz": 0}))
    assert sum(1 + len(r.get("dt", ())) for r in every if r["k"] == "mv") == 150


def test_move_batches_roundtrip_exactly(tmp_path: Path) -> None:
    import random

    rng = random.Random(5)
    pts = [(i * 8, rng.randrange(1920), rng.randrange(1080)) for i in range(1500)]
    raws = [(RAW_MOVE, ms(t), x, y) for t, x, y in pts]
    records = run_pipeline(tmp_path, raws, make_policy(capture={"mouse_move_hz": 0}))
    got = [p for r in records if r["k"] == "mv" for p in expand_moves(r)]
    assert got == [(t * 1000, x, y) for t, x, y in pts]


def test_queue_full_drops_are_counted_and_recorded_as_gap(tmp_path: Path) -> None:
    q = EventQueue(maxsize=4)
    for i in range(10):
        q.put_nowait((RAW_MOVE, i, 0, 0))
    assert len(q) == 4 and q.dropped == 6

    def setup(p: Pipeline) -> None:
        p.queue.dropped = 42

    records = run_pipeline(tmp_path, [], setup=setup)
    gaps = [r for r in records if r["k"] == "gap"]
    assert gaps == [{"k": "gap", "t": gaps[0]["t"], "cause": "queue_full", "dropped": 42}]


def test_pause_writes_only_markers_and_blocks_everything(tmp_path: Path) -> None:
    raws = [
        (RAW_FOCUS, ms(1), WIN),
        *typing("ab", 5),
        (RAW_CONTROL, ms(10), "pause", float("inf")),
        *typing("secret", 20),
        (RAW_MOVE, ms(40), 1, 1),
        (RAW_TITLE, ms(41), 7, "Private"),
        (RAW_CONTROL, ms(50), "resume", None),
        *typing("z", 60),
    ]
    records = run_pipeline(tmp_path, raws, make_policy(capture={"keystrokes": "full"}))
    kinds = [r["k"] for r in records]
    p, r = kinds.index("pause"), kinds.index("resume")
    assert records[p] == {"k": "pause", "t": 10_000, "src": "user"}
    assert all(k not in ("kd", "ku", "mv", "title") for k in kinds[p:r])
    assert "secret" not in repr(records)
    # after resume the window context is written again (with its new title) before input
    assert records[r + 1]["k"] == "focus" and records[r + 1]["win"]["title"] == "Private"
    assert [x.get("cls") for x in records[r + 1 :] if x["k"] == "kd"] == ["letter"]
    assert [x["text"] for x in records if x["k"] == "text"] == ["ab", "z"]


def test_lock_pauses_capture_when_policy_says(tmp_path: Path) -> None:
    raws = [
        (RAW_SESSION, ms(1), True, True),
        *typing("ab", 5),
        (RAW_SESSION, ms(20), False, True),
        *typing("c", 30),
    ]
    records = run_pipeline(tmp_path, raws)
    kinds = [r["k"] for r in records]
    assert kinds[1:3] == ["pause", "resume"] and records[1]["src"] == "lock"
    assert kinds.count("kd") == 1
    off = run_pipeline(tmp_path / "off", raws, make_policy(pause={"on_lock": False}))
    assert [r["k"] for r in off].count("kd") == 3


def test_excluded_window_yields_only_a_marker(tmp_path: Path) -> None:
    vault = WindowInfo(id=9, title="My Vault", app="KeePassXC", pid=11, process="keepassxc")
    raws = [
        (RAW_FOCUS, ms(1), WIN),
        *typing("ok", 5),
        (RAW_FOCUS, ms(20), vault),
        *typing("hunter2", 25),
        (RAW_MOVE, ms(40), 3, 3),
        (RAW_BUTTON, ms(41), 3, 3, "left", True),
        (RAW_TITLE, ms(42), 9, "Entry: bank"),
        (RAW_FOCUS, ms(50), WIN),
        *typing("k", 60),
    ]
    policy = make_policy(capture={"keystrokes": "full"}, exclusions={"apps": ["keepassxc"]})
    records = run_pipeline(tmp_path, raws, policy)
    text = repr(records)
    assert "Vault" not in text and "hunter2" not in text
    assert "bank" not in text and "KeePassXC" not in text
    e = next(i for i, r in enumerate(records) if r["k"] == "excl")
    assert records[e] == {"k": "excl", "t": 20_000, "rule": "app"}
    assert records[e + 1]["k"] == "focus"  # nothing between the marker and the next window


def test_title_regex_and_allowlist(tmp_path: Path) -> None:
    bank = WindowInfo(id=3, title="Online Banking - Firefox", app="firefox")
    policy = make_policy(exclusions={"titles": ["(?i)bank"]})
    records = run_pipeline(tmp_path / "a", [(RAW_FOCUS, ms(1), bank)], policy)
    assert [r["rule"] for r in records if r["k"] == "excl"] == ["title"]
    policy = make_policy(exclusions={"allow_apps": ["soffice.bin"]})
    records = run_pipeline(
        tmp_path / "b", [(RAW_FOCUS, ms(1), bank), (RAW_FOCUS, ms(2), WIN)], policy
    )
    assert [r["k"] for r in records][1:3] == ["excl", "focus"]


def test_exclusion_check_failure_fails_closed(tmp_path: Path) -> None:
    def setup(p: Pipeline) -> None:
        def broken(win: WindowInfo) -> str | None:
            raise RuntimeError("probe crashed")

        p.gates.extra_window_rules.append(broken)

    records = run_pipeline(tmp_path, [(RAW_FOCUS, ms(1), WIN), *typing("x", 5)], setup=setup)
    assert [r["k"] for r in records] == ["start", "excl", "end"]
    assert records[1]["rule"] == "check_failed"


def test_unknown_window_recorded_once_and_capture_continues(tmp_path: Path) -> None:
    records = run_pipeline(tmp_path, [(RAW_FOCUS, ms(1), None), *typing("ab", 5)])
    assert [r for r in records if r["k"] == "focus"] == [{"k": "focus", "t": 1000, "win": None}]
    assert sum(r["k"] == "kd" for r in records) == 2


def test_marks_are_written(tmp_path: Path) -> None:
    records = run_pipeline(
        tmp_path, [(RAW_MARK, ms(3), "shed", {"what": "screenshots", "level": 1})]
    )
    assert {"k": "shed", "t": 3000, "what": "screenshots", "level": 1} in records


def test_rotation_by_size_seals_chunks_in_order(tmp_path: Path) -> None:
    import random

    rng = random.Random(3)
    raws = [(RAW_MOVE, ms(i), rng.randrange(5000), rng.randrange(5000)) for i in range(60_000)]
    policy = make_policy(capture={"mouse_move_hz": 0}, spool={"chunk_max_mb": 0.05})
    spool = Spool(tmp_path, policy.spool)
    spool.ensure()
    sealed: list[int] = []
    pipeline = Pipeline(
        policy, spool, header, session_id="s", t0_ns=T0, event_time_flush=True, clock_ns=lambda: T0
    )
    pipeline.on_sealed.append(lambda m: sealed.append(m.seq))
    pipeline.start()
    for raw in raws:
        pipeline.queue.put_control(raw)
    assert pipeline.stop(30)
    assert len(sealed) >= 3 and sealed == list(range(len(sealed)))
    (session,) = list_sessions(tmp_path)
    assert next(p.name for p in session.chunk_paths) == "000000.jsonl.zst"
    assert not session.part_paths
    headers = session.headers()
    assert [h["seq"] for h in headers] == sealed
    total = sum(1 + len(r.get("dt", ())) for r in session.records() if r["k"] == "mv")
    assert total == 60_000
    for m in session.manifests():
        assert m.bytes == (tmp_path / "sessions" / "s" / f"{m.seq:06d}.jsonl.zst").stat().st_size


def test_rotation_by_age(tmp_path: Path) -> None:
    policy = make_policy(spool={"chunk_max_age_s": 1, "flush_interval_s": 0.05})
    spool = Spool(tmp_path, policy.spool)
    spool.ensure()
    pipeline = Pipeline(policy, spool, header, session_id="s")
    sealed = []
    pipeline.on_sealed.append(sealed.append)
    pipeline.start()
    from tests.xserver import wait_for

    wait_for(lambda: sealed, 5, "a chunk sealed by age")
    assert pipeline.stop(5)
    assert read_chunk(tmp_path / "sessions" / "s" / "000000.jsonl.zst").complete


@pytest.mark.parametrize("on_full", ["stop", "drop_oldest"])
def test_quota(tmp_path: Path, on_full: str) -> None:
    spool_root = tmp_path / "spool"
    old = spool_root / "sessions" / "20200101T000000Z-00000000"
    old.mkdir(parents=True)
    # an old sealed chunk of 2 MiB of incompressible data fills the 1 MiB quota
    import os

    from deskcorder.storage.chunk import ChunkWriter

    w = ChunkWriter(old, old.name, 0, header(0))
    w.write({"k": "text", "t": 1, "text": os.urandom(1 << 20).hex()})
    w.seal()
    policy = make_policy(spool={"quota_mb": 1, "on_full": on_full, "flush_interval_s": 0.05})
    spool = Spool(spool_root, policy.spool)
    pipeline = Pipeline(policy, spool, header, session_id="s", t0_ns=T0)
    pipeline.start()
    from tests.xserver import wait_for

    if on_full == "stop":
        wait_for(lambda: pipeline.status()["blocked"] == "quota", 5, "quota stop")
        for raw in typing("abc", 1000):
            pipeline.queue.put_control(raw)
    else:
        wait_for(lambda: not (old / "000000.jsonl.zst").exists(), 5, "oldest chunk dropped")
    assert pipeline.stop(5)
    records = list(list_sessions(spool_root)[-1].records())
    if on_full == "stop":
        assert {"k": "pause", "src": "quota"}.items() <= next(
            r for r in records if r["k"] == "pause"
        ).items()
        assert not any(r["k"] == "kd" for r in records)
    else:
        gap = next(r for r in records if r["k"] == "gap")
        validate_record(gap)
        assert gap["cause"] == "quota_drop" and gap["dropped"] == 1
        assert gap["chunk"] == f"{old.name}/000000"


def test_retention_deletes_old_sealed_chunks_and_records_it(tmp_path: Path) -> None:
    import os

    from deskcorder.storage.chunk import ChunkWriter

    spool_root = tmp_path / "spool"
    old = spool_root / "sessions" / "20200101T000000Z-00000000"
    old.mkdir(parents=True)
    w = ChunkWriter(old, old.name, 0, header(0))
    w.write_many([{"k": "kd", "t": i, "cls": "letter"} for i in range(5)])
    w.seal()
    week_ago = time_now() - 8 * 86400
    os.utime(old / "000000.jsonl.zst", (week_ago, week_ago))
    fresh = spool_root / "sessions" / "20200102T000000Z-00000000"
    fresh.mkdir(parents=True)
    ChunkWriter(fresh, fresh.name, 0, header(0)).seal()
    policy = make_policy(spool={"retention_days": 7})
    records = run_pipeline(tmp_path, [], policy)
    assert not (old / "000000.jsonl.zst").exists()
    assert (fresh / "000000.jsonl.zst").exists()
    gap = next(r for r in records if r["k"] == "gap")
    assert gap["cause"] == "retention" and gap["dropped"] == 5
    for record in records:
        validate_record(record)
    keep = run_pipeline(tmp_path / "k", [], make_policy(spool={"retention_days": 0}))
    assert not any(r["k"] == "gap" for r in keep)


def time_now() -> float:
    import time

    return time.time()


def test_record_times_never_go_backwards(tmp_path: Path) -> None:
    """Readings from different hook threads arrive slightly out of order; t stays monotonic."""
    raws = [
        (RAW_MOVE, ms(10.9), 1, 1),
        (RAW_KEY, ms(10.2), True, "a", None, 97),
        (RAW_BUTTON, ms(9.0), 1, 1, "left", True),
        (RAW_KEY, ms(12.5), False, "a", None, 97),
    ]
    records = run_pipeline(tmp_path, raws, make_policy(capture={"mouse_move_hz": 0}))
    times = [r["t"] for r in records]
    assert times == sorted(times)
    assert all(t % 1000 == 0 for t in times)
    assert [r["t"] for r in records if r["k"] in ("kd", "bd", "ku")] == [10_000, 10_000, 12_000]


def test_release_is_rendered_like_its_press(tmp_path: Path) -> None:
    """A plain key released while ctrl is held must not turn into a shortcut (and spell
    itself); a shortcut released after ctrl must stay the shortcut."""
    raws = [
        (RAW_KEY, ms(1), True, "q", None, ord("q")),
        (RAW_KEY, ms(2), True, None, "ctrl_l", 0xFFE3),
        (RAW_KEY, ms(3), False, "q", None, ord("q")),  # q released while ctrl is down
        (RAW_KEY, ms(4), True, "s", None, ord("s")),  # ctrl+s
        (RAW_KEY, ms(5), False, None, "ctrl_l", 0xFFE3),
        (RAW_KEY, ms(6), False, "s", None, ord("s")),  # s released after ctrl
    ]
    records = [r for r in run_pipeline(tmp_path, raws) if r["k"] in ("kd", "ku")]
    assert [{k: v for k, v in r.items() if k != "t"} for r in records] == [
        {"k": "kd", "cls": "letter"},
        {"k": "kd", "key": "ctrl_l"},
        {"k": "ku", "cls": "letter"},
        {"k": "kd", "key": "s", "mods": ["ctrl"]},
        {"k": "ku", "key": "ctrl_l"},
        {"k": "ku", "key": "s", "mods": ["ctrl"]},
    ]
    assert "q" not in repr(records)
