"""UI Automation on Windows: the focused element (password field?) and the element at a point.

``IsPassword`` of the focused element, and for classic Win32 edit controls the
``ES_PASSWORD`` style of the focused window, say "password field";
``ElementFromPoint`` finds the element under a click. All OS calls go through
:class:`UIA` (``comtypes`` for UI Automation, plain ctypes for the window
style), created on the accessibility monitor's thread (COM is initialised per
thread) on first use; tests pass a fake. Importable on every OS.

UI Automation has no cheap notification the monitor could use without a COM
event handler thread, so the focused element is asked ``poll_s`` times a
second (and at once after each focus-moving input). Calls into a hung
application are bounded by UI Automation's connection and transaction
timeouts (set to :data:`TIMEOUT_MS`).
"""

from __future__ import annotations

import ctypes
import ntpath
from collections.abc import Callable
from typing import Any

from deskcorder.events import WindowInfo
from deskcorder.platform.base import Accessibility, Element, Found
from deskcorder.platform.elements import PolledAccessibility, element_path

_ES_PASSWORD = 0x0020
_GWL_STYLE = -16
TIMEOUT_MS = 250

# UIA control type ids -> the AT-SPI role names every backend writes
ROLES = {
    50000: "push button", 50001: "calendar", 50002: "check box", 50003: "combo box",
    50004: "text", 50005: "link", 50006: "image", 50007: "list item", 50008: "list",
    50009: "menu", 50010: "menu bar", 50011: "menu item", 50012: "progress bar",
    50013: "radio button", 50014: "scroll bar", 50015: "slider", 50016: "spin button",
    50017: "status bar", 50018: "page tab list", 50019: "page tab", 50020: "label",
    50021: "tool bar", 50022: "tool tip", 50023: "tree", 50024: "tree item",
    50025: "unknown", 50026: "panel", 50027: "unknown", 50028: "table", 50029: "table cell",
    50030: "document", 50031: "push button", 50032: "frame", 50033: "panel",
    50034: "header", 50035: "table column header", 50036: "table", 50037: "title bar",
    50038: "separator",
}  # fmt: skip
# consoles: what is typed there cannot be checked (runas, ssh and sudo prompts echo nothing)
TERMINALS = frozenset(
    {"cmd.exe", "powershell.exe", "pwsh.exe", "conhost.exe", "windowsterminal.exe",
     "openconsole.exe", "wsl.exe", "putty.exe", "kitty.exe", "mintty.exe", "alacritty.exe",
     "wezterm-gui.exe"}
)  # fmt: skip


class UIA:
    """The few UI Automation and Win32 calls made here. Created only on Windows."""

    def __init__(self) -> None:
        import comtypes  # type: ignore[import-not-found,unused-ignore]
        import comtypes.client  # type: ignore[import-not-found,unused-ignore]

        comtypes.CoInitialize()  # this thread (the accessibility monitor's)
        comtypes.client.GetModule("UIAutomationCore.dll")
        from comtypes.gen import UIAutomationClient as uia  # type: ignore[import-not-found,unused-ignore]

        self.uia = uia
        self.automation = comtypes.client.CreateObject(
            uia.CUIAutomation, interface=uia.IUIAutomation
        )
        try:  # IUIAutomation2 (Windows 8+): bound the calls into other processes
            auto2 = self.automation.QueryInterface(uia.IUIAutomation2)
            auto2.ConnectionTimeout = TIMEOUT_MS
            auto2.TransactionTimeout = TIMEOUT_MS
        except Exception:
            pass
        self.walker = self.automation.ControlViewWalker

    def focused(self) -> Any:
        return self.automation.GetFocusedElement()

    def at(self, x: int, y: int) -> Any:
        point = self.uia.tagPOINT(x, y)
        return self.automation.ElementFromPoint(point)

    def parent(self, element: Any) -> Any:
        return self.walker.GetParentElement(element)

    def props(self, element: Any) -> dict[str, Any]:
        rect = element.CurrentBoundingRectangle
        return {
            "type": int(element.CurrentControlType),
            "name": element.CurrentName or None,
            "pid": int(element.CurrentProcessId),
            "password": bool(element.CurrentIsPassword),
            "rect": (rect.left, rect.top, rect.right - rect.left, rect.bottom - rect.top),
        }

    def focused_hwnd_is_password(self) -> bool:
        """Classic edit controls: the ES_PASSWORD style of the window with the focus."""

        class GUITHREADINFO(ctypes.Structure):
            _fields_ = [
                ("cbSize", ctypes.c_uint32),
                ("flags", ctypes.c_uint32),
                ("hwndActive", ctypes.c_void_p),
                ("hwndFocus", ctypes.c_void_p),
                ("hwndCapture", ctypes.c_void_p),
                ("hwndMenuOwner", ctypes.c_void_p),
                ("hwndMoveSize", ctypes.c_void_p),
                ("hwndCaret", ctypes.c_void_p),
                ("rcCaret", ctypes.c_long * 4),
            ]

        user32: Any = ctypes.windll.user32  # type: ignore[attr-defined,unused-ignore]
        info = GUITHREADINFO()
        info.cbSize = ctypes.sizeof(GUITHREADINFO)
        if not user32.GetGUIThreadInfo(0, ctypes.byref(info)) or not info.hwndFocus:
            return False
        return bool(user32.GetWindowLongW(info.hwndFocus, _GWL_STYLE) & _ES_PASSWORD)


class UiaAccessibility(PolledAccessibility):
    """``Accessibility`` for Windows."""

    def __init__(self, api: Callable[[], Any] = UIA) -> None:
        super().__init__(api)

    def focused(self, window: WindowInfo | None, detail: bool) -> Element | None:
        api = self.api()
        element = api.focused()
        if element is None or window is None:
            return None
        props = api.props(element)
        if window.pid is not None and props["pid"] != window.pid:
            return None  # the focus is in another process than the focused window's
        password = props["password"] or api.focused_hwnd_is_password()
        return self._element(api, element, props, window, detail, password)

    def element_at(self, x: int, y: int, window: WindowInfo) -> Element | None:
        api = self.api()
        element = api.at(x, y)
        if element is None:
            return None
        props = api.props(element)
        if window.pid is None or props["pid"] != window.pid:
            return None  # another window's element: never recorded
        return self._element(api, element, props, window, True, props["password"])

    def _element(
        self, api: Any, element: Any, props: dict[str, Any], window: WindowInfo, detail: bool,
        password: bool,
    ) -> Element:  # fmt: skip
        role = ROLES.get(props["type"], "unknown")
        process = (window.process or ntpath.basename(window.exe or "")).lower()
        unverified = process in TERMINALS
        if not detail:
            return Element(role, password=password, unverified=unverified)
        pid = props["pid"]

        def parent(node: Any) -> Any:  # up to the window: the desktop is another process's
            up = api.parent(node)
            return up if up is not None and api.props(up)["pid"] == pid else None

        path = element_path(element, parent, lambda e: ROLES.get(api.props(e)["type"], "unknown"))
        return Element(
            role, props["name"], props["rect"], path, password=password, unverified=unverified
        )


def find_accessibility() -> Found[Accessibility]:
    """``Backend.accessibility`` of the Windows backend."""
    return Found("Windows UI Automation (IsPassword, ElementFromPoint)", UiaAccessibility())
