"""Run raw events through the real pipeline into a real spool (no OS hooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deskcorder.capture.pipeline import Pipeline
from deskcorder.events import FORMAT_NAME, FORMAT_VERSION
from deskcorder.policy.load import Layer, build_policy
from deskcorder.policy.model import Policy
from deskcorder.storage.reader import list_sessions
from deskcorder.storage.spool import Spool

T0 = 1_000_000_000


def make_policy(**sections: dict[str, Any]) -> Policy:
    return build_policy([Layer("test", sections)]).policy


def header(seq: int) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "session": "s", "seq": seq}


def ms(n: float) -> int:
    """A raw timestamp n milliseconds after the session start."""
    return T0 + int(n * 1_000_000)


def run_pipeline(
    tmp: Path, raws: list[tuple[Any, ...]], policy: Policy | None = None, setup: Any = None
) -> list[dict[str, Any]]:
    """Feed ``raws`` (already timestamped) through a pipeline; return every record written."""
    spool = Spool(tmp / "spool", (policy or Policy()).spool)
    spool.ensure()
    pipeline = Pipeline(
        policy or Policy(), spool, header, session_id="s", t0_ns=T0, clock_ns=lambda: T0
    )
    # the focused field is identified at once as "not a password field" (a fast
    # accessibility API); tests of other answers replace the field in ``setup``
    from tests.privacy.helpers import InstantField

    pipeline.key_filter.field = InstantField(False)
    if setup is not None:
        setup(pipeline)
    pipeline.start()
    for raw in raws:
        pipeline.queue.put_control(raw)
    assert pipeline.stop(10)
    sessions = list_sessions(spool.root)
    return [r for s in sessions for r in s.records()]
