"""Monitor geometry through mss, for the backends without a native query (Windows, macOS).

``mss_screens()`` lists the monitors as ``(left, top, width, height)`` in screen
coordinates, fresh on every call (mss caches the list per instance, so each
call opens one); the agent asks every few seconds to notice monitors being
plugged in, removed or resized. The mss call is isolated in :func:`_monitors`.
"""

from __future__ import annotations

from typing import Any


def _monitors() -> list[dict[str, Any]]:
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss
    with factory() as sct:
        return list(sct.monitors[1:])  # [0] is the bounding box of all of them


def mss_screens() -> list[tuple[int, int, int, int]]:
    try:
        mons = _monitors()
    except Exception:  # no display session (a service before login): unknown
        return []
    return [(int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"])) for m in mons]
