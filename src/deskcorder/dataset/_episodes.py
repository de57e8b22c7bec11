"""``deskcorder.dataset.episodes(path)``: training examples straight from recordings.

Yields one episode at a time (reduced as it is read), each a sequence of
``(observation image path, action)`` pairs, without writing an export.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deskcorder.dataset._actions import Action
from deskcorder.dataset._reduce import Reducer, Thresholds, run
from deskcorder.dataset._source import SourceOpener, opener_for
from deskcorder.errors import UsageError

Step = tuple[Path | None, Action]


@dataclass(frozen=True)
class Episode:
    """One episode of one session: its steps in order.

    Iterating gives ``(observation, action)`` pairs; ``observation`` is the
    image file of the screen before the action (a blob: WebP or JPEG without
    an extension; Pillow opens it) or None when there is none.
    """

    session: str
    number: int
    steps: tuple[Step, ...]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)


def episodes(
    path: str | os.PathLike[str] | SourceOpener, thresholds: Thresholds | None = None
) -> Iterator[Episode]:
    """Episodes of every session at ``path``: a spool or a session folder, or a source
    opener (a collector's data: ``deskcorder.commands.dataset.source_opener``)."""
    source = opener_for(path)()
    try:
        if not source.local_files:
            raise UsageError(
                f"{source.where}: episodes() hands out image files, and these images are not "
                "on this machine: build an export from it instead (deskcorder dataset build)"
            )
        for session in source.sessions():
            chunks = ((decoded.header, decoded.records) for decoded in session.chunks())
            actions = run(Reducer(thresholds), chunks)
            for number, group in itertools.groupby(actions, key=lambda a: a.episode):
                steps = tuple(
                    (None if a.observation is None else source.blob_path(a.observation.sha256), a)
                    for a in group
                )
                yield Episode(session.id, number, steps)
    finally:
        source.close()
