"""Battery state through psutil, the same on Linux, Windows and macOS.

``battery()`` is the ``Backend.power`` probe of the real backends. The psutil
call is isolated in :func:`_sensors` so tests can replace it; psutil is
imported on first use, not at import time.
"""

from __future__ import annotations

from typing import Any

from deskcorder.platform.base import Battery


def _sensors() -> Any:
    import psutil

    return psutil.sensors_battery()  # None without a battery


def battery() -> Battery | None:
    """The battery's charge and whether mains power is connected; None without a battery."""
    try:
        reading = _sensors()
    except (AttributeError, NotImplementedError, OSError):  # not supported here
        return None
    if reading is None:
        return None
    percent = None if reading.percent is None else float(reading.percent)
    plugged = reading.power_plugged
    return Battery(percent=percent, plugged=None if plugged is None else bool(plugged))
