"""Suspend and wall-clock steps, with injected clocks.

The session clock counts sleep; the awake clock does not; the wall clock can
step. A suspend shows as the session clock running ahead of the awake clock, a
step as the wall clock moving against the session clock. Either way every event
keeps its true wall time and records never go backwards.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from deskcorder.capture.clockwatch import ClockWatch
from deskcorder.capture.gates import Gates
from deskcorder.capture.pipeline import Pipeline
from deskcorder.commands.inspect import summarize
from deskcorder.events import FORMAT_NAME, FORMAT_VERSION, RAW_KEY, validate_record
from deskcorder.platform import clock
from deskcorder.storage.reader import WallClock, read_session
from deskcorder.storage.spool import Spool
from tests.core.helpers import make_policy
from tests.xserver import wait_for

S = 1_000_000_000  # ns per second
T0 = 50_000 * S  # session clock at the start (boot time: includes earlier suspends)
A0 = 40_000 * S  # awake clock at the start
W0 = 1_795_000_000 * S  # wall clock at the start (2026-11-18)


class Clocks:
    """Three clocks the test moves by hand."""

    def __init__(self) -> None:
        self.session, self.awake, self.wall = T0, A0, W0

    def run(self, seconds: float) -> None:
        """The machine is awake for ``seconds``."""
        ns = int(seconds * S)
        self.session += ns
        self.awake += ns
        self.wall += ns

    def sleep(self, seconds: float) -> None:
        """The machine is suspended for ``seconds``: the awake clock stops."""
        ns = int(seconds * S)
        self.session += ns
        self.wall += ns

    def step(self, seconds: float) -> None:
        """The wall clock is stepped (NTP, a manual change); nothing else moves."""
        self.wall += int(seconds * S)

    def watch(self) -> ClockWatch:
        return ClockWatch(lambda: self.session, lambda: self.awake, lambda: self.wall)


def test_watch_sees_a_suspend_and_a_step_and_ignores_noise() -> None:
    c = Clocks()
    w = c.watch()
    c.run(10)
    assert w.check() == []
    c.awake += S // 10  # 100 ms of disagreement is noise
    assert w.check() == []
    c.sleep(3600)
    (change,) = w.check()
    assert change.cause == "suspend" and change.amount_ns == 3600 * S
    assert (change.session_ns, change.wall_ns) == (c.session, c.wall)
    c.run(1)
    c.step(-7200)
    (change,) = w.check()
    assert change.cause == "step" and change.amount_ns == -7200 * S
    assert w.check() == []  # the new offset is the reference now


def test_where_the_session_clock_stops_in_sleep_a_suspend_is_a_step() -> None:
    """A platform without a sleep-counting clock: the wall clock jumps instead."""
    c = Clocks()
    w = c.watch()
    c.wall += 600 * S  # slept 10 min; session and awake clocks both stopped
    (change,) = w.check()
    assert change.cause == "step" and change.amount_ns == 600 * S


def key(t_ns: int) -> list[tuple[Any, ...]]:
    return [(RAW_KEY, t_ns, True, "a", None, None), (RAW_KEY, t_ns, False, "a", None, None)]


def run_with_clocks(tmp_path: Path, script: Any) -> list[dict[str, Any]]:
    """A pipeline on injected clocks; ``script(c, feed, settle)`` drives them."""
    c = Clocks()
    policy = make_policy(spool={"flush_interval_s": 0.02, "min_free_mb": 0})
    spool = Spool(tmp_path / "spool", policy.spool)
    spool.ensure()

    def header(seq: int) -> dict[str, Any]:
        t = (c.session - T0) // 1000
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "session": "s",
            "seq": seq,
            "clock": clock.anchor(t, c.wall),
        }

    pipeline = Pipeline(
        policy,
        spool,
        header,
        session_id="s",
        t0_ns=T0,
        clock_ns=lambda: c.session,
        clock_watch=c.watch(),
    )
    pipeline.start()

    def feed(raws: list[tuple[Any, ...]]) -> None:
        n = pipeline.written_records
        for raw in raws:
            pipeline.queue.put_control(raw)
        wait_for(lambda: pipeline.written_records >= n + len(raws), 5, "written")

    def settle(kind: str) -> None:
        wait_for(lambda: pipeline.counts.get(kind, 0) > 0, 5, f"a {kind} record")

    script(c, feed, settle)
    assert pipeline.stop(5)
    return list(read_session(spool.sessions_dir / "s").records())


def test_events_keep_their_wall_time_across_a_suspend(tmp_path: Path) -> None:
    expected: list[int] = []  # wall ns of each key-down

    def script(c: Clocks, feed: Any, settle: Any) -> None:
        c.run(1)
        expected.append(c.wall)
        feed(key(c.session))
        c.sleep(3600)  # a lid closed for an hour
        settle("clock")
        c.run(2)
        expected.append(c.wall)
        feed(key(c.session))

    records = run_with_clocks(tmp_path, script)
    for record in records:
        validate_record(record)
    (mark,) = [r for r in records if r["k"] == "clock"]
    assert mark["cause"] == "suspend" and mark["slept_us"] == 3600 * 10**6
    assert mark["clock"]["unix_ns"] == W0 + 3601 * S and mark["clock"]["t"] == 3601 * 10**6
    session = read_session(tmp_path / "spool" / "sessions" / "s")
    downs = [e for e in session.events() if e.kind == "kd"]
    assert [e.unix_ns for e in downs] == expected
    assert [e.t for e in downs] == [1_000_000, 3_603_000_000]  # the hour is in session time
    end = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=(W0 + 3603 * S) // S)
    assert summarize(session)["end_utc"] == end.isoformat()


def test_a_wall_clock_step_re_anchors_and_never_reorders(tmp_path: Path) -> None:
    expected: list[int] = []

    def script(c: Clocks, feed: Any, settle: Any) -> None:
        c.run(5)
        expected.append(c.wall)
        feed(key(c.session))
        c.step(-3600)  # NTP sets the clock back an hour
        settle("clock")
        c.run(1)
        expected.append(c.wall)
        feed(key(c.session))

    records = run_with_clocks(tmp_path, script)
    (mark,) = [r for r in records if r["k"] == "clock"]
    assert mark["cause"] == "step" and mark["step_us"] == -3600 * 10**6
    ts = [r["t"] for r in records]
    assert ts == sorted(ts)
    session = read_session(tmp_path / "spool" / "sessions" / "s")
    assert [e.unix_ns for e in session.events() if e.kind == "kd"] == expected
    assert expected[1] < expected[0]  # wall time went back; record order did not


def test_pause_ends_on_the_session_clock_whatever_the_wall_clock_does() -> None:
    wall = [float(W0 // S)]
    timer = [100.0]
    gates = Gates(make_policy(), clock=lambda: wall[0], timer=lambda: timer[0])
    gates.paused_until = gates.pause_until(10)
    wall[0] -= 3600  # the wall clock steps back an hour: the pause is not an hour longer
    timer[0] += 599
    assert gates.blocked_reason() == "user" and gates.pause_left() == 1
    wall[0] += 7200  # ... nor shorter when it steps forward
    timer[0] += 1
    assert gates.blocked_reason() is None


def test_schedule_follows_the_wall_clock_after_a_step() -> None:
    wall = [0.0]
    policy = make_policy(
        schedule={"enabled": True, "timezone": "UTC", "hours": {"thu": ("09:00-17:00",)}}
    )
    gates = Gates(policy, clock=lambda: wall[0], timer=lambda: 0.0)
    wall[0] = datetime(2026, 11, 19, 10, tzinfo=timezone.utc).timestamp()  # a Thursday
    assert gates.blocked_reason() is None
    wall[0] += 8 * 3600  # stepped to 18:00: outside work hours
    assert gates.blocked_reason() == "schedule"


def test_wall_clock_follows_the_anchors_in_force() -> None:
    wall = WallClock()
    assert wall.unix_ns(5) is None
    wall.see({"format": "deskcorder-chunk", "clock": {"t": 0, "unix_ns": W0, "utc": ""}})
    assert wall.unix_ns(1_000_000) == W0 + S
    wall.see({"k": "kd", "t": 7, "clock": {"t": 0, "unix_ns": 0}})  # not an anchor
    assert wall.unix_ns(1_000_000) == W0 + S
    wall.see({"k": "clock", "t": 10, "cause": "step", "clock": {"t": 10, "unix_ns": 5 * S}})
    assert wall.unix_ns(1_000_010) == 6 * S


def test_dataset_export_places_actions_at_their_wall_time_across_a_step(tmp_path: Path) -> None:
    from deskcorder.dataset import BuildOptions, build

    expected: list[int] = []

    def script(c: Clocks, feed: Any, settle: Any) -> None:
        for i in range(2):
            c.run(30)
            expected.append(c.wall)
            feed(key(c.session))
            if i == 0:
                c.step(-3600)
                settle("clock")

    run_with_clocks(tmp_path, script)
    out = tmp_path / "dataset"
    build(tmp_path / "spool", BuildOptions(out=out, fmt="jsonl", images="none", purpose="analysis"))
    rows = [
        json.loads(line)
        for f in sorted(out.rglob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    starts = sorted(datetime.fromisoformat(r["t_start_utc"]) for r in rows)
    want = sorted(
        datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=w // 1000)
        for w in expected
    )
    assert starts == want
