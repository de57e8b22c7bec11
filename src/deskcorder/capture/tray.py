"""The visible indicator: a tray icon showing recording / paused / excluded.

pystray (extra ``[tray]``) draws the icon. Menu: Pause, Resume, "What is
captured". The icon's title (tooltip, and on X11 the tray window's
``WM_NAME``) always says the state, e.g. ``deskcorder: paused (12 min left)``.

On X11 pystray's ``xorg`` backend (used when no AppIndicator/GTK is present,
or with ``PYSTRAY_BACKEND=xorg``) has no menu (``HAS_MENU = False``) and
creates its tray window without ``ButtonPressMask``, so a click never reaches
it: that is why clicking the icon did nothing. ``platform/linux/tray.py``
adds the mask, and the default menu item (left click) toggles pause/resume there.
Pause/Resume/What-is-captured are menu entries on every backend with menus.

Where no tray can be shown (no display, pystray missing, no system tray),
``status()`` says why, ``deskcorder doctor`` warns, and the privacy component
shows a desktop notification at start instead.

Everything that decides what the icon shows is pure (:func:`tray_state`,
:func:`icon_title`, :func:`icon_image`) and tested without a display.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deskcorder.host import Host
from deskcorder.platform.desktop import has_display, send_notification, tray_manager_present

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

RECORDING, PAUSED, EXCLUDED, BLOCKED = "recording", "paused", "excluded", "not recording"
COLORS = {
    RECORDING: (220, 38, 38),  # red: recording
    PAUSED: (120, 120, 120),  # grey: paused by the user
    EXCLUDED: (217, 119, 6),  # amber: window excluded by policy
    BLOCKED: (37, 99, 235),  # blue: schedule / lock / consent
}


def tray_state(status: dict[str, Any]) -> str:
    """Which of the four states the agent's status means."""
    if status.get("recording"):
        return RECORDING
    if status.get("blocked") == "user":
        return PAUSED
    if status.get("blocked") is None and status.get("excluded"):
        return EXCLUDED
    return BLOCKED


def icon_title(status: dict[str, Any]) -> str:
    """The tooltip; with the agent's alerts (e.g. "uploads stopped: ...") after it."""
    title = _state_title(status)
    alerts = status.get("alerts")
    if isinstance(alerts, list) and alerts:
        title += "; " + "; ".join(str(a) for a in alerts)
    return title


def _state_title(status: dict[str, Any]) -> str:
    state = tray_state(status)
    if state == PAUSED:
        left = status.get("gate_pause_left_s")
        if isinstance(left, int | float):
            return f"deskcorder: paused ({max(1, round(left / 60))} min left)"
        return "deskcorder: paused until you resume"
    if state == BLOCKED:
        why = status.get("blocked") or "off"
        storage = status.get("storage")
        if why == "storage" and isinstance(storage, dict) and storage.get("what"):
            return f"deskcorder: not recording: {storage['what']}; {storage.get('todo')}"
        return f"deskcorder: not recording ({why})"
    if state == EXCLUDED:
        return "deskcorder: not recording this window (excluded)"
    return "deskcorder: recording"


def icon_image(state: str, size: int = 64) -> Image:
    """A filled circle (recording), two bars (paused), a ring (excluded / blocked)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    color = (*COLORS[state], 255)
    pad = size // 8
    box = (pad, pad, size - pad, size - pad)
    if state == RECORDING:
        draw.ellipse(box, fill=color)
    elif state == PAUSED:
        w = size // 5
        draw.rectangle((pad + w // 2, pad, pad + w // 2 + w, size - pad), fill=color)
        draw.rectangle((size - pad - w // 2 - w, pad, size - pad - w // 2, size - pad), fill=color)
    else:
        draw.ellipse(box, outline=color, width=max(2, size // 10))
    return img


def captured_summary(host: Host) -> str:
    """One paragraph: what this policy records (for "What is captured")."""
    cap = host.policy.capture
    keys = host.keystrokes
    parts = []
    if cap.mouse:
        parts.append("mouse moves, clicks and scrolls")
    if cap.keyboard and keys != "off":
        parts.append(
            {
                "full": "typed text with emails, card numbers, secrets etc. removed",
                "redacted": "key timing and kinds of keys (letter/digit...), not characters",
                "shortcuts": "shortcuts and special keys only",
            }[keys]
        )
    if cap.window:
        parts.append("the focused window's app and title")
    if cap.screenshots:
        parts.append("screenshots")
    return (
        "Recorded: "
        + ("; ".join(parts) or "nothing")
        + ". Never: password fields, excluded apps, private browsing windows, paused time. "
        + "See everything with `deskcorder inspect`."
    )


class TrayComponent:
    """Agent component: shows the icon and keeps it in step with the agent's state."""

    name = "tray"

    def __init__(self, poll_s: float = 0.5) -> None:
        self.poll_s = poll_s
        self.icon: Any = None
        self.reason: str | None = None
        self.state: str | None = None
        self.title: str | None = None
        self._host: Host | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._icon_thread: threading.Thread | None = None

    # -- actions (menu callbacks; also called by tests) -------------------------
    def _call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self._host is not None
        handler = self._host.control_handlers.get(cmd)
        if handler is None:
            return {"error": f"no {cmd} handler"}
        try:
            return handler(fields)
        except Exception as exc:  # a refused pause (policy) is shown, not raised
            send_notification("deskcorder", f"{cmd} refused: {exc}")
            return {"error": str(exc)}

    def pause(self) -> dict[str, Any]:
        return self._call("pause", minutes=None)

    def resume(self) -> dict[str, Any]:
        return self._call("resume")

    def toggle(self) -> dict[str, Any]:
        return self.resume() if self.state == PAUSED else self.pause()

    def what_is_captured(self) -> str:
        assert self._host is not None
        text = captured_summary(self._host)
        send_notification("What deskcorder captures", text)
        return text

    # -- lifecycle ---------------------------------------------------------------
    def start(self, host: Host) -> None:
        self._show(host)
        if self.icon is None:
            # no tray icon: say at every start that recording is on
            send_notification(
                "deskcorder is recording",
                "Pause with `deskcorder pause`; see what is captured with `deskcorder inspect`.",
            )

    def _show(self, host: Host) -> None:
        self._host = host
        if not has_display():
            self.reason = "no display"
            return
        try:
            import pystray
        except Exception as exc:  # ImportError, or Xlib failing to open the display
            self.reason = f"pystray unavailable ({type(exc).__name__}: {exc})"
            return
        xorg = pystray.Icon.__module__.endswith("_xorg")
        if xorg and tray_manager_present() is False:
            self.reason = "no system tray on this desktop"
            return
        state = self._refresh_state()
        menu = pystray.Menu(
            pystray.MenuItem("Pause / Resume", _action(self.toggle), default=True, visible=False),
            pystray.MenuItem("Pause", _action(self.pause)),
            pystray.MenuItem("Resume", _action(self.resume)),
            pystray.MenuItem("What is captured", _action(self.what_is_captured)),
        )
        try:
            self.icon = pystray.Icon(
                "deskcorder", icon_image(state), self.title or "deskcorder", menu
            )
            if xorg:
                from deskcorder.platform.linux.tray import fix_xorg_clicks

                fix_xorg_clicks(self.icon)
            # our own daemon thread (run_detached's is not a daemon and would keep the
            # process alive after the agent stopped); macOS needs the main thread and
            # is not supported by this component yet
            self._icon_thread = threading.Thread(
                target=self.icon.run, name="deskcorder-tray-icon", daemon=True
            )
            self._icon_thread.start()
        except Exception as exc:
            self.reason = f"tray icon failed: {exc}"
            self.icon = None
            return
        self._thread = threading.Thread(target=self._run, name="deskcorder-tray", daemon=True)
        self._thread.start()

    def _refresh_state(self) -> str:
        assert self._host is not None
        status = self._host.capture_status()
        self.state = tray_state(status)
        self.title = icon_title(status)
        return self.state

    def _run(self) -> None:
        shown = (self.state, self.title)
        while not self._stop.wait(self.poll_s):
            try:
                self._refresh_state()
                if (self.state, self.title) != shown and self.icon is not None:
                    assert self.state is not None
                    if self.state != shown[0]:
                        self.icon.icon = icon_image(self.state)
                    self.icon.title = self.title
                    shown = (self.state, self.title)
            except Exception:
                log.exception("tray update failed")

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.icon is not None:
            try:
                self.icon.stop()
            except Exception:
                log.debug("tray stop failed", exc_info=True)
            if self._icon_thread is not None:
                self._icon_thread.join(timeout)

    def status(self) -> dict[str, object]:
        return {
            "shown": self.icon is not None,
            "state": self.state,
            "title": self.title,
            "unavailable": self.reason,
        }


def _action(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        fn()

    return run
