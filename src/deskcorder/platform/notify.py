"""Desktop notifications (the notice, a refused pause, "no tray icon here").

Linux desktops show them through ``notify-send`` (libnotify); elsewhere, or
without a display, :func:`send_notification` returns False and the caller
falls back to the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading


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
