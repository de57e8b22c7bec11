"""The Linux/X11 backend: pynput RECORD hooks, EWMH window context, logind lock state,
AT-SPI accessibility (secure input and elements).

Nothing here touches the display until the agent starts a part.
"""

from __future__ import annotations

from typing import Any

from deskcorder.platform.base import Backend
from deskcorder.platform.linux.accessibility import find_accessibility
from deskcorder.platform.linux.doctor import doctor_checks, keyboard_layout, screens
from deskcorder.platform.linux.input import X11Input
from deskcorder.platform.linux.network import NetworkManagerProbe
from deskcorder.platform.linux.session import LogindSessionProbe
from deskcorder.platform.linux.window import X11WindowProbe
from deskcorder.platform.power import battery

__all__ = ["LogindSessionProbe", "X11Input", "X11WindowProbe", "create_backend"]


def create_backend(display: str | None = None, **options: Any) -> Backend:
    """The X11 backend. ``display`` defaults to ``$DISPLAY`` when a part starts."""
    return Backend(
        name="x11",
        input=X11Input(display),
        windows=X11WindowProbe(display),
        session=LogindSessionProbe(),
        keyboard_layout=lambda: keyboard_layout(display),
        screens=lambda: screens(display),
        doctor=lambda: doctor_checks(display),
        accessibility=find_accessibility,
        power=battery,
        network=NetworkManagerProbe(),
    )
