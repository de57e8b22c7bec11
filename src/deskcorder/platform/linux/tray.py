"""The system tray on X11: is a tray running, and make pystray's xorg icon clickable.

pystray's ``xorg`` backend (used when no AppIndicator/GTK is present, or with
``PYSTRAY_BACKEND=xorg``) creates its tray window without ``ButtonPressMask``,
so a click never reaches it: :func:`fix_xorg_clicks` adds the mask.
"""

from __future__ import annotations

import os
from typing import Any


def fix_xorg_clicks(icon: Any) -> None:
    """pystray's xorg tray window lacks ButtonPressMask: add it so clicks arrive."""
    window = getattr(icon, "_window", None)
    if window is None:
        return
    import Xlib.X

    window.change_attributes(
        event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask | Xlib.X.ButtonPressMask
    )
    icon._display.flush()


def x11_tray_manager_present(display: str | None = None) -> bool | None:
    """Whether an XEmbed system tray (``_NET_SYSTEM_TRAY_S<n>`` owner) runs; None if unknown."""
    display = display or os.environ.get("DISPLAY")
    if not display:
        return None
    try:
        import Xlib.display
        import Xlib.X

        conn = Xlib.display.Display(display)
    except Exception:
        return None
    try:
        atom = conn.intern_atom(f"_NET_SYSTEM_TRAY_S{conn.get_default_screen()}")
        return bool(conn.get_selection_owner(atom) != Xlib.X.NONE)
    except Exception:
        return None
    finally:
        conn.close()
