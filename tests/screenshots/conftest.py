"""One real X server for all screenshot tests: two 1920x1080 monitors side by side.

Xvfb has a single 3840x1080 screen; the monitor split is given to the worker
(mss reports the one screen). Starting one server instead of one per module
keeps the suite light on a shared machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.xserver import XServer, xserver

MONITORS = [(0, 0, 3840, 1080), (0, 0, 1920, 1080), (1920, 0, 1920, 1080)]


@pytest.fixture(scope="package")
def x() -> Iterator[XServer]:
    with xserver(size="3840x1080x24") as server:
        yield server
