"""The self-limits watchdog: pure shedding decisions, real measurement, records in a session."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from deskcorder.agent import Agent, default_components
from deskcorder.events import K_SHED, RAW_MARK, validate_record
from deskcorder.platform import select_backend
from deskcorder.policy.load import Layer, build_policy
from deskcorder.storage.reader import list_sessions
from deskcorder.watchdog import (
    MAX_LEVEL,
    Shedder,
    Watchdog,
    describe,
    move_hz,
    process_usage,
    screenshots_allowed,
)
from tests.xserver import wait_for


def feed(shedder: Shedder, samples: Sequence[tuple[float, float, float | None]]) -> list[int]:
    """(time s, cpu seconds, rss MiB) samples -> the level after each."""
    levels = []
    for now, cpu, rss in samples:
        shedder.update(now, cpu, rss)
        levels.append(shedder.level)
    return levels


def test_sheds_one_step_per_two_samples_over_the_cpu_limit_up_to_the_last_step() -> None:
    s = Shedder(10.0, 200, window_s=10)
    # 50 % CPU: 1 cpu second per 2 s sample
    levels = feed(s, [(2.0 * i, 1.0 * i, 50.0) for i in range(14)])
    # CPU is judged from t=10 s (a full window); then one step per two samples over
    assert levels == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert s.level == MAX_LEVEL
    assert s.cpu_pct == pytest.approx(50.0)


def test_a_start_up_burst_is_not_sustained_load() -> None:
    s = Shedder(10.0, 200, window_s=10)
    busy = [(2.0 * i, 1.5 * i, 50.0) for i in range(5)]  # 75 % CPU for 8 s
    idle = [(2.0 * i, 6.0, 50.0) for i in range(5, 20)]
    assert set(feed(s, busy + idle)) == {0}


def test_memory_over_the_limit_sheds_too() -> None:
    s = Shedder(10.0, 200)
    change = None
    for i in range(3):
        change = s.update(2.0 * i, 0.0, 250.0) or change
    assert change is not None and change.level == 1 and change.was == 0
    assert change.reason == "memory 250 MiB > 200 MiB"


def test_recovers_one_step_after_a_calm_minute_and_not_in_between() -> None:
    s = Shedder(10.0, 200, window_s=4, down_after_s=60)
    feed(s, [(2.0 * i, 1.0 * i, 50.0) for i in range(6)])  # busy -> level 2
    assert s.level == 2
    # 7 % CPU: below the limit but above half of it -> neither up nor down
    t, cpu = 10.0, 5.0
    for _ in range(60):
        t, cpu = t + 2, cpu + 0.14
        s.update(t, cpu, 50.0)
    assert s.level == 2
    # idle: down one step after 60 s of calm, then another after 60 s more
    levels = []
    for _ in range(70):
        t += 2
        change = s.update(t, cpu, 50.0)
        levels.append(s.level)
        if change is not None:
            assert change.reason.startswith("recovered: cpu 0%")
    assert 1 in levels and levels[-1] == 0
    assert levels.index(1) > 25  # no sooner than a minute (window drain + 60 s)


def test_consumer_helpers() -> None:
    assert screenshots_allowed(0) and not screenshots_allowed(1)
    assert move_hz(60.0, 0) == 60.0 and move_hz(60.0, 1) == 60.0
    assert move_hz(60.0, 2) == 10.0 and move_hz(5.0, 2) == 5.0
    assert move_hz(0.0, 2) == 10.0  # 0 = every event; shedding still caps it
    assert move_hz(60.0, 3) == 2.0
    assert describe(0) == "nothing" and describe(3) == "screenshots,moves<=2Hz"


def test_process_usage_measures_this_process() -> None:
    cpu0, rss = process_usage()
    assert rss is not None and 5 < rss < 4096
    end = time.process_time() + 0.2
    while time.process_time() < end:  # bounded busy work, not a sleep
        pass
    cpu1, _ = process_usage()
    assert cpu1 - cpu0 >= 0.15


class FakeAgent:
    def __init__(self) -> None:
        self.policy = build_policy([Layer("t", {"limits": {"cpu_percent": 5.0}})]).policy
        self.shed_level = 0
        self.pipeline = None
        self.emitted: list[tuple[object, ...]] = []

    def emit(self, raw: tuple[object, ...]) -> None:
        self.emitted.append(raw)

    def set_move_interval_us(self, interval_us: int) -> None:  # deskcorder.host.Host
        if self.pipeline is not None:
            self.pipeline.moves.interval_us = interval_us


def test_watchdog_sets_the_level_emits_shed_marks_and_reports_status() -> None:
    clock = iter(float(i) for i in range(100))
    usage = iter((0.5 * i, 120.0) for i in range(100))  # 50 % CPU
    dog = Watchdog(
        interval_s=3600,
        measure=lambda: next(usage),
        clock=lambda: next(clock),
        shedder=Shedder(5.0, 200, window_s=1),
    )
    agent = FakeAgent()
    dog.start(agent)  # type: ignore[arg-type]
    try:
        assert dog.tick() is None
        change = dog.tick()
        assert change is not None and change.level == 1
        assert agent.shed_level == 1
        ((tag, _t, kind, fields),) = agent.emitted
        assert tag == RAW_MARK
        assert kind == K_SHED
        assert fields == {"level": 1, "what": "screenshots; cpu 50% > 5%"}
        validate_record({"k": kind, "t": 0, **fields})
        assert dog.status() == {
            "shed_level": 1,
            "shed": "screenshots",
            "cpu_percent": 50.0,
            "rss_mb": 120.0,
            "changes": 1,
        }
    finally:
        dog.stop(1)
    assert dog._thread is not None and not dog._thread.is_alive()


def test_move_cap_follows_the_level() -> None:
    from types import SimpleNamespace

    from deskcorder.capture.coalesce import MoveCoalescer
    from deskcorder.watchdog import apply_move_cap

    agent = FakeAgent()
    agent.pipeline = SimpleNamespace(moves=MoveCoalescer(60.0))  # type: ignore[assignment]
    moves = agent.pipeline.moves  # type: ignore[attr-defined]
    for level, interval in ((2, 100_000), (3, 500_000), (1, 16_666), (0, 16_666)):
        apply_move_cap(agent, level)  # type: ignore[arg-type]
        assert moves.interval_us == interval, level


def test_default_components_include_the_watchdog() -> None:
    names = [c.name for c in default_components(None)]  # type: ignore[arg-type]
    assert "watchdog" in names


def test_shed_record_reaches_the_session_file_of_a_real_agent(tmp_path: Path) -> None:
    """A busy agent (simulated CPU) writes shed records into its chunk, valid per schema."""
    loaded = build_policy([Layer("t", {"limits": {"cpu_percent": 5.0}})])
    cpu = iter(0.5 * i for i in range(10_000))
    dog = Watchdog(
        interval_s=0.02, measure=lambda: (next(cpu), 50.0), shedder=Shedder(5.0, 200, window_s=0.05)
    )
    backend = select_backend("fake", repeat=50)
    agent = Agent(loaded, tmp_path / "spool", backend, components=lambda a: [dog])
    runner = threading.Thread(target=agent.run, name="test-agent")
    runner.start()
    try:
        wait_for(lambda: agent.shed_level >= 2, 20, "the watchdog to shed two steps")
        assert agent.status()["watchdog"]["shed_level"] >= 2
        assert agent.pipeline is not None
        assert agent.pipeline.moves.interval_us >= 100_000  # at most 10 Hz (policy: 60)
    finally:
        agent.request_stop()
        runner.join(10)
    assert not runner.is_alive()
    records = [r for s in list_sessions(tmp_path / "spool") for r in s.records()]
    shed = [r for r in records if r["k"] == K_SHED]
    assert [r["level"] for r in shed][:2] == [1, 2]
    assert shed[0]["what"].startswith("screenshots; cpu ")
    for record in shed:
        validate_record(record)
