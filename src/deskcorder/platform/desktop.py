"""What the desktop offers beside the capture backend: a display, a system tray, notifications.

The tray icon (pystray) and notifications pick their OS mechanism themselves,
whichever capture backend runs, so these answers depend on the desktop, not
on the backend:

* :func:`has_display`: is there a graphical session to show things in?
* :func:`tray_manager_present`: is a system tray running (known only on X11,
  ``platform/linux/tray.py``; None elsewhere)?
* :func:`send_notification`: Linux desktops show notifications through
  ``notify-send`` (libnotify); elsewhere, or without a display, it returns
  False and the caller falls back to the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading


def has_display() -> bool:
    """A graphical session: ``$DISPLAY`` (X11), or Windows, or macOS."""
    return bool(os.environ.get("DISPLAY")) or sys.platform in ("win32", "darwin")


def tray_manager_present(display: str | None = None) -> bool | None:
    """Whether a system tray runs on ``display`` (default ``$DISPLAY``); None if unknown."""
    if sys.platform in ("win32", "darwin"):
        return None  # the taskbar / menu bar always has one; nothing to ask
    from deskcorder.platform.linux.tray import x11_tray_manager_present

    return x11_tray_manager_present(display)


def send_notification(title: str, body: str, urgency: str = "normal") -> bool:
    """Start a desktop notification via ``notify-send`` (libnotify); False when unavailable.

    Never waits for it (notify-send can block for seconds when no notification
    daemon answers): a daemon thread reaps the process.
    """
    exe = shutil.which("notify-send")
    if exe is None or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        proc = subprocess.Popen(
            [exe, "--app-name=deskcorder", f"--urgency={urgency}", title, body],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return False

    def reap() -> None:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    threading.Thread(target=reap, name="deskcorder-notify", daemon=True).start()
    return True
