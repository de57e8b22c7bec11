"""macOS Accessibility (AX): the focused element (password field?) and the element at a point.

A focused ``AXSecureTextField`` (subrole or role), or Secure Event Input being
on (``IsSecureEventInputEnabled``: any secure text field, Terminal's Secure
Keyboard Entry), means "password field"; ``AXUIElementCopyElementAtPosition``
finds the element under a click. All OS calls go through
:class:`deskcorder.platform.macos.api.MacAPI`; tests pass a fake. AX has
per-application notifications but no global one for focus changes, so the
focused element is asked ``poll_s`` times a second (and at once after each
focus-moving input); every AX call is bounded by a messaging timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deskcorder.events import WindowInfo
from deskcorder.platform.base import Accessibility, Element, Found
from deskcorder.platform.elements import PolledAccessibility, element_path
from deskcorder.platform.macos import api as macapi

# AX roles -> the AT-SPI role names every backend writes
ROLES = {
    "AXButton": "push button", "AXTextField": "text", "AXSecureTextField": "password text",
    "AXTextArea": "text", "AXStaticText": "label", "AXCheckBox": "check box",
    "AXRadioButton": "radio button", "AXPopUpButton": "combo box", "AXComboBox": "combo box",
    "AXLink": "link", "AXImage": "image", "AXMenuItem": "menu item", "AXMenu": "menu",
    "AXMenuBar": "menu bar", "AXMenuBarItem": "menu item", "AXWindow": "frame",
    "AXSheet": "dialog", "AXGroup": "panel", "AXScrollArea": "scroll pane", "AXTable": "table",
    "AXRow": "table row", "AXCell": "table cell", "AXList": "list", "AXOutline": "tree",
    "AXTabGroup": "page tab list", "AXToolbar": "tool bar", "AXSlider": "slider",
    "AXWebArea": "document web", "AXHeading": "heading", "AXApplication": "application",
}  # fmt: skip
# terminals: what is typed there cannot be checked (sudo and ssh prompts echo nothing)
TERMINALS = frozenset(
    {"com.apple.terminal", "com.googlecode.iterm2", "net.kovidgoyal.kitty",
     "org.alacritty", "com.github.wez.wezterm", "dev.warp.warp-stable", "co.zeit.hyper"}
)  # fmt: skip


def role_name(props: dict[str, Any]) -> str:
    if props.get("subrole") == "AXSecureTextField":
        return "password text"
    role = str(props.get("role") or "")
    return ROLES.get(role, role[2:].lower() if role.startswith("AX") else "unknown")


class AXAccessibility(PolledAccessibility):
    """``Accessibility`` for macOS."""

    def __init__(self, api: Callable[[], Any] = macapi.load) -> None:
        super().__init__(api)

    def focused(self, window: WindowInfo | None, detail: bool) -> Element | None:
        api = self.api()
        if api.secure_input_enabled():  # a secure field has focus, wherever it is
            return Element("password text", password=True)
        if window is None or window.pid is None:
            return None
        element = api.ax_focused(window.pid)
        if element is None:
            return None
        return self._element(api, element, api.ax_props(element), window, detail)

    def element_at(self, x: int, y: int, window: WindowInfo) -> Element | None:
        api = self.api()
        element = api.ax_at(x, y)
        if element is None:
            return None
        props = api.ax_props(element)
        if window.pid is None or props["pid"] != window.pid:
            return None  # another window's element: never recorded
        return self._element(api, element, props, window, True)

    def _element(
        self, api: Any, element: Any, props: dict[str, Any], window: WindowInfo, detail: bool
    ) -> Element:
        role = role_name(props)
        password = role == "password text"
        unverified = (window.app or "").lower() in TERMINALS
        if not detail:
            return Element(role, password=password, unverified=unverified)

        def parent(node: Any) -> Any:  # up to the window (the application is not part of it)
            up = api.ax_parent(node)
            return None if up is None or api.ax_props(up)["role"] == "AXApplication" else up

        path = element_path(element, parent, lambda e: role_name(api.ax_props(e)))
        return Element(
            role, props["name"], props["rect"], path, password=password, unverified=unverified
        )


def find_accessibility() -> Found[Accessibility]:
    """``Backend.accessibility`` of the macOS backend."""
    return Found("macOS Accessibility (AXSecureTextField, Secure Event Input)", AXAccessibility())
