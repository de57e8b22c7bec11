"""The AT-SPI helper process: every libatspi call the agent makes happens here.

Started by :class:`deskcorder.platform.linux.accessibility.AtspiAccessibility`
as ``python -m deskcorder.platform.linux.atspi_helper`` (visible in the process
list as such). Why a process of its own rather than a thread: libatspi is not
thread-safe, shares its one D-Bus connection with GTK's accessibility bridge
when GTK is loaded in the same process (the tray icon may load it), and a call
to a hung application can take several times its timeout; the agent waits for
an answer at most a fixed time and kills a helper that stops answering.

Protocol: JSON lines. Requests on stdin, each with an ``id`` and a
``deadline`` (``time.monotonic()`` seconds: the same clock in both processes;
past it the request is answered ``{"id": n, "late": true}`` without any call):

* ``{"op": "focused", "pid": P, "detail": bool}``: the focused element of the
  application with process id P (``detail``: with name, bounds and role path);
* ``{"op": "at", "pid": P, "x": X, "y": Y}``: the deepest element of P's active
  window at a screen point.

Replies on stdout: ``{"id": n, "el": {role, name, rect, path, password,
unverified} | null}``; ``{"ev": "focus"}`` whenever some element gains or loses
focus; ``{"ready": true}`` once, at start, or ``{"fatal": "..."}`` before
exiting.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

CALL_TIMEOUT_MS = 250  # each D-Bus call to an application (Atspi.set_timeout)
HANG_BACKOFF_S = (2.0, 30.0)  # no calls to an application that timed out, doubling
MAX_DEPTH = 32  # hit-test steps / parents walked
NAME_MAX = 1000  # characters of a name sent (the agent keeps fewer)
APP_RESCAN_S = 2.0  # an unknown pid is looked up again at most this often
EXIT_GRACE_S = 2.0  # after stdin closes, exit even if a call is stuck


class Helper:
    def __init__(self, atspi: Any, out: Any = None) -> None:
        self.atspi = atspi
        self.out = out or sys.stdout
        self.focus: Any = None  # the accessible that last gained focus
        self.apps: dict[int, Any] = {}
        self.missing: dict[int, float] = {}  # pid -> when last looked for in vain
        self.hung: dict[int, tuple[float, float]] = {}  # pid -> (until, backoff)

    def send(self, msg: dict[str, Any]) -> None:
        self.out.write(json.dumps(msg, separators=(",", ":")) + "\n")
        self.out.flush()

    # -- events (also dispatched while a call waits for its reply) ---------------------------
    def on_event(self, event: Any) -> None:
        try:
            if event.detail1:
                self.focus = event.source
            elif self.focus is not None and event.source == self.focus:
                self.focus = None
        except Exception:
            self.focus = None
        self.send({"ev": "focus"})

    # -- requests --------------------------------------------------------------------------
    def handle(self, line: str) -> None:
        try:
            req = json.loads(line)
            rid = req["id"]
        except (ValueError, KeyError, TypeError):
            return
        if time.monotonic() > float(req.get("deadline", 0)):
            self.send({"id": rid, "late": True})
            return
        pid = int(req.get("pid") or 0)
        el = None
        if pid > 0 and not self._is_hung(pid):
            try:
                if req.get("op") == "focused":
                    el = self.focused(pid, bool(req.get("detail")))
                elif req.get("op") == "at":
                    el = self.at(pid, int(req["x"]), int(req["y"]))
            except Exception as exc:
                self._failed(pid, exc)
                el = None
            else:
                self.hung.pop(pid, None)
        self.send({"id": rid, "el": el})

    def _is_hung(self, pid: int) -> bool:
        entry = self.hung.get(pid)
        return entry is not None and time.monotonic() < entry[0]

    def _failed(self, pid: int, exc: Exception) -> None:
        text = str(exc).lower()
        if "timeout" in text or "noreply" in text or "no reply" in text:
            backoff = self.hung.get(pid, (0.0, HANG_BACKOFF_S[0] / 2))[1] * 2
            backoff = min(backoff, HANG_BACKOFF_S[1])
            self.hung[pid] = (time.monotonic() + backoff, backoff)
        self.apps.pop(pid, None)

    def app(self, pid: int) -> Any:
        app = self.apps.get(pid)
        if app is not None:
            return app
        seen = self.missing.get(pid)
        if seen is not None and time.monotonic() - seen < APP_RESCAN_S:
            return None
        desktop = self.atspi.get_desktop(0)
        for i in range(desktop.get_child_count()):
            child = desktop.get_child_at_index(i)
            if child is None:
                continue
            try:
                child_pid = child.get_process_id()
            except Exception:
                continue
            self.apps[child_pid] = child
        app = self.apps.get(pid)
        if app is None:
            self.missing[pid] = time.monotonic()
        return app

    def _active_frames(self, pid: int) -> list[Any]:
        app = self.app(pid)
        if app is None:
            return []
        active = self.atspi.StateType.ACTIVE
        frames = []
        for i in range(app.get_child_count()):
            frame = app.get_child_at_index(i)
            if frame is not None and frame.get_state_set().contains(active):
                frames.append(frame)
        return frames

    def focused(self, pid: int, detail: bool) -> dict[str, Any] | None:
        atspi = self.atspi
        acc = self.focus
        if (
            acc is None
            or acc.get_process_id() != pid
            or not acc.get_state_set().contains(atspi.StateType.FOCUSED)
        ):
            acc = self._find_focused(pid)
            if acc is None:
                return None
            self.focus = acc
        return self.element(acc, detail, None)

    def _find_focused(self, pid: int) -> Any:
        frames = self._active_frames(pid)
        if not frames:
            return None
        atspi = self.atspi
        states = atspi.StateSet.new([atspi.StateType.FOCUSED])
        any_ = atspi.CollectionMatchType.ALL
        rule = atspi.MatchRule.new(states, any_, {}, any_, [], any_, [], any_, False)
        for frame in frames:
            found = atspi.Collection.get_matches(
                frame, rule, atspi.CollectionSortOrder.CANONICAL, 1, True
            )
            if found:
                return found[0]
        return None

    def at(self, pid: int, x: int, y: int) -> dict[str, Any] | None:
        atspi = self.atspi
        screen = atspi.CoordType.SCREEN
        for frame in self._active_frames(pid):
            if not atspi.Component.contains(frame, x, y, screen):
                continue
            path = [frame.get_role_name()]
            acc = frame
            for _ in range(MAX_DEPTH):
                child = atspi.Component.get_accessible_at_point(acc, x, y, screen)
                if child is None or child == acc:
                    break
                acc = child
                path.append(acc.get_role_name())
            return self.element(acc, True, path)
        return None

    def element(self, acc: Any, detail: bool, path: list[str] | None) -> dict[str, Any]:
        atspi = self.atspi
        role = acc.get_role()
        out: dict[str, Any] = {
            "role": acc.get_role_name() or "unknown",
            "password": role == atspi.Role.PASSWORD_TEXT,
            "unverified": role == atspi.Role.TERMINAL,
        }
        if not detail:
            return out
        name = acc.get_name()
        if name:
            out["name"] = name[:NAME_MAX]
        try:
            r = atspi.Component.get_extents(acc, atspi.CoordType.SCREEN)
            if r.width > 0 and r.height > 0:
                out["rect"] = [r.x, r.y, r.width, r.height]
        except Exception:
            pass  # no Component interface: no bounds
        out["path"] = path if path is not None else self._path_up(acc)
        return out

    def _path_up(self, acc: Any) -> list[str]:
        roles = [acc.get_role_name()]
        stop = {self.atspi.Role.APPLICATION, self.atspi.Role.DESKTOP_FRAME}
        node = acc
        for _ in range(MAX_DEPTH):
            node = node.get_parent()
            if node is None or node.get_role() in stop:
                break
            roles.append(node.get_role_name())
        return roles[::-1]


def _atspi() -> Any:
    import gi  # type: ignore[import-not-found,unused-ignore]

    gi.require_version("Atspi", "2.0")
    from gi.repository import Atspi  # type: ignore[import-not-found,unused-ignore]

    return Atspi


def main() -> int:
    try:
        atspi = _atspi()
        from gi.repository import GLib  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, ValueError) as exc:
        print(json.dumps({"fatal": f"PyGObject/Atspi: {exc}"}), flush=True)
        return 1
    atspi.set_timeout(CALL_TIMEOUT_MS, CALL_TIMEOUT_MS)
    helper = Helper(atspi)
    listener = atspi.EventListener.new(helper.on_event)
    listener.register("object:state-changed:focused")

    def on_line(line: str) -> bool:
        helper.handle(line)
        return False  # one-shot idle source

    def read_requests() -> None:
        for line in sys.stdin:
            GLib.idle_add(on_line, line)
        GLib.idle_add(lambda: atspi.event_quit() and False)
        time.sleep(EXIT_GRACE_S)  # still here: a call is stuck in a hung application
        os._exit(0)

    threading.Thread(target=read_requests, name="requests", daemon=True).start()
    helper.send({"ready": True})
    atspi.event_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
