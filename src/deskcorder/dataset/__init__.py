"""Training data: raw records reduced to actions, exported as a dataset.

The public surface (docs/dataset.md):

* :func:`reduce_records` / :func:`reduce_session` -> :class:`Action` values
  (streaming; :class:`Thresholds` sets where one action ends and the next begins);
* :class:`Reducer`, the same as a push API (``feed`` one record at a time);
* :func:`episodes`: ``(observation image, action)`` pairs per episode, for training code;
* :func:`build` / :func:`erase`: the export behind ``deskcorder dataset build|erase``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from deskcorder.dataset._actions import KINDS, Action, Element, Shot, Window, pyautogui_code
from deskcorder.dataset._episodes import Episode, episodes
from deskcorder.dataset._export import BuildOptions, build
from deskcorder.dataset._reduce import PRE_ACTION, Reducer, Thresholds, reduce_records, run

if TYPE_CHECKING:
    from deskcorder.storage.reader import Session


def reduce_session(
    session: Session | str | os.PathLike[str], thresholds: Thresholds | None = None
) -> Iterator[Action]:
    """Actions of a recorded session (a folder, a chunk file or an open ``Session``).

    Reads one chunk at a time, so memory does not grow with the session.
    """
    from deskcorder.storage.reader import Session as _Session
    from deskcorder.storage.reader import read_session

    sess = session if isinstance(session, _Session) else read_session(session)
    chunks = ((decoded.header, decoded.records) for _path, decoded in sess.chunks())
    return run(Reducer(thresholds), chunks)


def erase(
    lineage: str | os.PathLike[str], user: str, dataset: str | os.PathLike[str] | None = None
) -> dict[str, int]:
    """Remove ``user``'s rows and images from an export (see ``deskcorder dataset erase``)."""
    from pathlib import Path

    from deskcorder.dataset._erase import erase as _erase

    return _erase(Path(lineage), user, None if dataset is None else Path(dataset))


__all__ = [
    "KINDS",
    "PRE_ACTION",
    "Action",
    "BuildOptions",
    "Element",
    "Episode",
    "Reducer",
    "Shot",
    "Thresholds",
    "Window",
    "build",
    "episodes",
    "erase",
    "pyautogui_code",
    "reduce_records",
    "reduce_session",
]
