"""Secure input on Windows: is the focused element a password field?

UI Automation ``IsPassword`` of the focused element (through ``comtypes`` when
installed) and, for classic Win32 edit controls, the ``ES_PASSWORD`` style of
the focused window (plain ctypes). Imports on every OS; the Windows calls are
made only when the probe runs, in small functions that tests replace.
"""

from __future__ import annotations

import ctypes
from typing import Any

from deskcorder.platform.base import Found, SecureProbe

_ES_PASSWORD = 0x0020
_GWL_STYLE = -16


def _win_focused_hwnd() -> int | None:
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
    if not user32.GetGUIThreadInfo(0, ctypes.byref(info)):
        return None
    return int(info.hwndFocus) if info.hwndFocus else None


def _win_es_password(hwnd: int) -> bool:
    user32: Any = ctypes.windll.user32  # type: ignore[attr-defined,unused-ignore]
    return bool(user32.GetWindowLongW(hwnd, _GWL_STYLE) & _ES_PASSWORD)


def _win_uia_is_password() -> bool | None:
    try:
        import comtypes.client  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    import comtypes  # type: ignore[import-not-found,unused-ignore]

    comtypes.CoInitialize()  # per thread (monitor and pipeline threads both ask)
    comtypes.client.GetModule("UIAutomationCore.dll")
    from comtypes.gen import UIAutomationClient as uia  # type: ignore[import-not-found,unused-ignore]

    automation = comtypes.client.CreateObject(uia.CUIAutomation, interface=uia.IUIAutomation)
    element = automation.GetFocusedElement()
    return bool(element.CurrentIsPassword) if element is not None else None


def _win_secure_input() -> bool | None:
    hwnd = _win_focused_hwnd()
    if hwnd is not None and _win_es_password(hwnd):
        return True
    return _win_uia_is_password()


def find_probe() -> Found[SecureProbe]:
    """``Backend.secure_input`` of the Windows backend."""
    return Found("Windows UI Automation IsPassword / ES_PASSWORD", _win_secure_input)
