"""The few macOS calls the backend makes (pyobjc), behind one small class.

Tests pass a fake with the same methods. pyobjc is imported in
:class:`MacAPI`'s constructor, so this module imports on every OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

from deskcorder.errors import EnvironmentUnsupported

# IOHIDCheckAccess(kIOHIDRequestTypeListenEvent): 0 granted, 1 denied, 2 unknown
IOHID_REQUEST_LISTEN_EVENT = 1
IOHID_ACCESS_GRANTED = 0
AX_TIMEOUT_S = 0.25  # AXUIElementSetMessagingTimeout: calls into a hung application


class MacAPI:
    """Wrappers over AppKit, Quartz and ApplicationServices. Created only on macOS."""

    appkit: Any
    quartz: Any

    def __init__(self) -> None:
        if sys.platform != "darwin":
            raise EnvironmentUnsupported("the macOS backend only runs on macOS")
        try:
            import AppKit
            import Quartz
        except ImportError as exc:
            raise EnvironmentUnsupported(
                f"pyobjc is missing ({exc}); install deskcorder's macOS dependencies"
            ) from exc
        self.appkit = AppKit
        self.quartz = Quartz

    def frontmost_app(self) -> dict[str, Any] | None:
        """pid, name, bundle id and executable of the frontmost application."""
        app = self.appkit.NSWorkspace.sharedWorkspace().frontmostApplication()
        if app is None:
            return None
        url = app.executableURL()
        return {
            "pid": int(app.processIdentifier()),
            "name": str(app.localizedName() or "") or None,
            "bundle": str(app.bundleIdentifier() or "") or None,
            "exe": str(url.path()) if url is not None else None,
        }

    def windows(self) -> list[dict[str, Any]]:
        """On-screen normal windows, front to back (CGWindowListCopyWindowInfo)."""
        q = self.quartz
        opts = q.kCGWindowListOptionOnScreenOnly | q.kCGWindowListExcludeDesktopElements
        out: list[dict[str, Any]] = []
        for w in q.CGWindowListCopyWindowInfo(opts, q.kCGNullWindowID) or []:
            if int(w.get(q.kCGWindowLayer, 0)) != 0:
                continue
            bounds = w.get(q.kCGWindowBounds) or {}
            out.append(
                {
                    "id": int(w.get(q.kCGWindowNumber, 0)),
                    "pid": int(w.get(q.kCGWindowOwnerPID, 0)),
                    "owner": str(w.get(q.kCGWindowOwnerName, "") or "") or None,
                    # the title needs the Screen Recording permission (macOS 10.15+)
                    "title": w.get(q.kCGWindowName),
                    "rect": (
                        int(bounds.get("X", 0)),
                        int(bounds.get("Y", 0)),
                        int(bounds.get("Width", 0)),
                        int(bounds.get("Height", 0)),
                    ),
                }
            )
        return out

    def session(self) -> tuple[bool | None, bool | None]:
        """(locked, on console) from CGSessionCopyCurrentDictionary."""
        info = self.quartz.CGSessionCopyCurrentDictionary()
        if info is None:
            return (None, None)
        locked = bool(info.get("CGSSessionScreenIsLocked", False))
        console = info.get("kCGSSessionOnConsoleKey")
        return (locked, None if console is None else bool(console))

    def accessibility_trusted(self) -> bool:
        import ApplicationServices

        return bool(ApplicationServices.AXIsProcessTrusted())

    def screen_recording_allowed(self) -> bool | None:
        fn = getattr(self.quartz, "CGPreflightScreenCaptureAccess", None)
        return None if fn is None else bool(fn())

    def input_monitoring_allowed(self) -> bool | None:
        path = ctypes.util.find_library("IOKit")
        if not path:
            return None
        iokit = ctypes.cdll.LoadLibrary(path)
        fn = getattr(iokit, "IOHIDCheckAccess", None)
        if fn is None:  # before macOS 10.15 there was no such permission
            return True
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int]
        return bool(fn(IOHID_REQUEST_LISTEN_EVENT) == IOHID_ACCESS_GRANTED)

    def secure_input_enabled(self) -> bool | None:
        """Whether some app (a password field, a terminal) turned on Secure Event Input."""
        path = ctypes.util.find_library("Carbon")
        if not path:
            return None
        fn = getattr(ctypes.cdll.LoadLibrary(path), "IsSecureEventInputEnabled", None)
        if fn is None:
            return None
        fn.restype = ctypes.c_bool
        return bool(fn())

    # -- Accessibility (AX): the focused element and the element at a point ------------------
    def _ax(self) -> Any:
        import ApplicationServices

        return ApplicationServices

    def ax_focused(self, pid: int) -> Any:
        """The focused UI element of the application ``pid`` (None when not readable)."""
        ax = self._ax()
        app = ax.AXUIElementCreateApplication(pid)
        ax.AXUIElementSetMessagingTimeout(app, AX_TIMEOUT_S)
        err, element = ax.AXUIElementCopyAttributeValue(app, "AXFocusedUIElement", None)
        return element if err == 0 else None

    def ax_at(self, x: int, y: int) -> Any:
        """The deepest UI element at a screen point (AXUIElementCopyElementAtPosition)."""
        ax = self._ax()
        system = ax.AXUIElementCreateSystemWide()
        ax.AXUIElementSetMessagingTimeout(system, AX_TIMEOUT_S)
        err, element = ax.AXUIElementCopyElementAtPosition(system, float(x), float(y), None)
        return element if err == 0 else None

    def ax_parent(self, element: Any) -> Any:
        err, parent = self._ax().AXUIElementCopyAttributeValue(element, "AXParent", None)
        return parent if err == 0 else None

    def ax_props(self, element: Any) -> dict[str, Any]:
        """role, subrole, name (title or description), pid and rect of an element."""
        ax = self._ax()

        def attr(name: str) -> Any:
            err, value = ax.AXUIElementCopyAttributeValue(element, name, None)
            return value if err == 0 else None

        rect = None
        pos, size = attr("AXPosition"), attr("AXSize")
        if pos is not None and size is not None:
            ok1, point = ax.AXValueGetValue(pos, ax.kAXValueCGPointType, None)
            ok2, extent = ax.AXValueGetValue(size, ax.kAXValueCGSizeType, None)
            if ok1 and ok2:
                rect = (int(point.x), int(point.y), int(extent.width), int(extent.height))
        err, pid = ax.AXUIElementGetPid(element, None)
        name = attr("AXTitle") or attr("AXDescription")
        return {
            "role": str(attr("AXRole") or ""),
            "subrole": str(attr("AXSubrole") or ""),
            "name": str(name) if name else None,
            "pid": int(pid) if err == 0 else None,
            "rect": rect,
        }


def load() -> Any:
    return MacAPI()
