"""The few Win32 calls the Windows backend makes, behind one small class.

Everything OS-specific is in :class:`Win32`; tests pass a fake with the same
methods. The module imports on every OS: ctypes' Windows-only names are used
only inside ``sys.platform == "win32"`` branches (which mypy understands).
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from ctypes import wintypes
from typing import Any

from deskcorder.errors import EnvironmentUnsupported

PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
EVENT_SYSTEM_FOREGROUND = 0x0003
EVENT_OBJECT_NAMECHANGE = 0x800C
WINEVENT_OUTOFCONTEXT = 0x0000
WINEVENT_SKIPOWNPROCESS = 0x0002
OBJID_WINDOW = 0
WM_QUIT = 0x0012
WM_WTSSESSION_CHANGE = 0x02B1
WTS_SESSION_LOCK = 0x7
WTS_SESSION_UNLOCK = 0x8
NOTIFY_FOR_THIS_SESSION = 0
HWND_MESSAGE = -3
DESKTOP_SWITCHDESKTOP = 0x0100
GW_OWNER = 4

WinEventCallback = Callable[[int, int, int], None]  # (event, hwnd, id_object)
SessionCallback = Callable[[int], None]  # WTS_SESSION_* code


class RECT(ctypes.Structure):
    _fields_ = [
        ("left", ctypes.c_long),
        ("top", ctypes.c_long),
        ("right", ctypes.c_long),
        ("bottom", ctypes.c_long),
    ]


class MSG(ctypes.Structure):
    _fields_ = [
        ("hwnd", ctypes.c_void_p),
        ("message", ctypes.c_uint),
        ("wParam", ctypes.c_size_t),
        ("lParam", ctypes.c_ssize_t),
        ("time", ctypes.c_uint32),
        ("pt_x", ctypes.c_long),
        ("pt_y", ctypes.c_long),
    ]


class Win32:
    """Thin wrappers over user32/kernel32/wtsapi32. Created only on Windows."""

    user32: Any
    kernel32: Any
    wtsapi32: Any

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise EnvironmentUnsupported("the Windows backend only runs on Windows")
        self.user32 = ctypes.WinDLL("user32", use_last_error=True)
        self.kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        self.wtsapi32 = ctypes.WinDLL("wtsapi32", use_last_error=True)
        self.user32.GetForegroundWindow.restype = wintypes.HWND
        self.user32.GetWindowTextLengthW.argtypes = [wintypes.HWND]
        self.user32.GetWindowTextW.argtypes = [wintypes.HWND, wintypes.LPWSTR, ctypes.c_int]
        self.user32.GetWindowThreadProcessId.argtypes = [
            wintypes.HWND,
            ctypes.POINTER(wintypes.DWORD),
        ]
        self.user32.GetClassNameW.argtypes = [wintypes.HWND, wintypes.LPWSTR, ctypes.c_int]
        self.user32.GetWindowRect.argtypes = [wintypes.HWND, ctypes.POINTER(RECT)]
        self.user32.IsWindowVisible.argtypes = [wintypes.HWND]
        self.user32.IsIconic.argtypes = [wintypes.HWND]
        self.user32.GetWindow.argtypes = [wintypes.HWND, ctypes.c_uint]
        self.user32.GetWindow.restype = wintypes.HWND
        self.kernel32.OpenProcess.restype = wintypes.HANDLE
        self.kernel32.QueryFullProcessImageNameW.argtypes = [
            wintypes.HANDLE,
            wintypes.DWORD,
            wintypes.LPWSTR,
            ctypes.POINTER(wintypes.DWORD),
        ]

    # -- window facts -------------------------------------------------------------
    def foreground(self) -> int:
        return int(self.user32.GetForegroundWindow() or 0)

    def title(self, hwnd: int) -> str:
        n = self.user32.GetWindowTextLengthW(hwnd)
        buf = ctypes.create_unicode_buffer(n + 1)
        self.user32.GetWindowTextW(hwnd, buf, n + 1)
        return buf.value

    def class_name(self, hwnd: int) -> str:
        buf = ctypes.create_unicode_buffer(256)
        self.user32.GetClassNameW(hwnd, buf, 256)
        return buf.value

    def pid(self, hwnd: int) -> int | None:
        pid = wintypes.DWORD(0)
        self.user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
        return int(pid.value) or None

    def exe(self, pid: int) -> str | None:
        handle = self.kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            return None
        try:
            size = wintypes.DWORD(32768)
            buf = ctypes.create_unicode_buffer(size.value)
            if not self.kernel32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
                return None
            return buf.value
        finally:
            self.kernel32.CloseHandle(handle)

    def rect(self, hwnd: int) -> tuple[int, int, int, int] | None:
        r = RECT()
        if not self.user32.GetWindowRect(hwnd, ctypes.byref(r)):
            return None
        return (r.left, r.top, r.right - r.left, r.bottom - r.top)

    def top_level_windows(self) -> list[int]:
        """Visible, non-minimised, unowned top-level windows, topmost first."""
        out: list[int] = []
        if sys.platform == "win32":
            proc_type = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)

            def collect(hwnd: int, _: int) -> bool:
                if (
                    self.user32.IsWindowVisible(hwnd)
                    and not self.user32.IsIconic(hwnd)
                    and not self.user32.GetWindow(hwnd, GW_OWNER)
                ):
                    out.append(int(hwnd))
                return True

            self.user32.EnumWindows(proc_type(collect), 0)
        return out

    # -- event loops (each runs on its own thread until quit(thread_id)) ------------
    def thread_id(self) -> int:
        return int(self.kernel32.GetCurrentThreadId())

    def quit(self, thread_id: int) -> None:
        """Ask a message loop to end. Posting fails until that thread has a message
        queue (its first USER call creates it), so retry for a short while."""
        for _ in range(100):
            if self.user32.PostThreadMessageW(thread_id, WM_QUIT, 0, 0):
                return
            time.sleep(0.01)

    def _pump(self) -> None:
        msg = MSG()
        while self.user32.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:
            self.user32.TranslateMessage(ctypes.byref(msg))
            self.user32.DispatchMessageW(ctypes.byref(msg))

    def run_win_events(self, callback: WinEventCallback) -> None:
        """Foreground and name-change WinEvents, delivered on this thread, until quit."""
        if sys.platform != "win32":
            return
        proc_type = ctypes.WINFUNCTYPE(
            None,
            wintypes.HANDLE,
            wintypes.DWORD,
            wintypes.HWND,
            wintypes.LONG,
            wintypes.LONG,
            wintypes.DWORD,
            wintypes.DWORD,
        )

        def handler(
            hook: int, event: int, hwnd: int, obj: int, child: int, tid: int, ms: int
        ) -> None:
            callback(int(event), int(hwnd or 0), int(obj))

        proc = proc_type(handler)
        flags = WINEVENT_OUTOFCONTEXT | WINEVENT_SKIPOWNPROCESS
        hooks = [
            self.user32.SetWinEventHook(ev, ev, None, proc, 0, 0, flags)
            for ev in (EVENT_SYSTEM_FOREGROUND, EVENT_OBJECT_NAMECHANGE)
        ]
        try:
            self._pump()
        finally:
            for hook in hooks:
                if hook:
                    self.user32.UnhookWinEvent(hook)

    def input_desktop_locked(self) -> bool | None:
        """True when the secure (Winlogon) desktop has input: the session is locked."""
        desk = self.user32.OpenInputDesktop(0, False, DESKTOP_SWITCHDESKTOP)
        if not desk:
            return True
        try:
            return not self.user32.SwitchDesktop(desk)
        finally:
            self.user32.CloseDesktop(desk)

    def run_session_events(self, callback: SessionCallback) -> bool:
        """WTS lock/unlock notifications through a message-only window, until quit.

        Returns False when registration failed (lock state then unknowable).
        """
        if sys.platform != "win32":
            return False
        lresult = ctypes.c_ssize_t
        wndproc_type = ctypes.WINFUNCTYPE(
            lresult, wintypes.HWND, ctypes.c_uint, wintypes.WPARAM, wintypes.LPARAM
        )
        self.user32.DefWindowProcW.argtypes = [
            wintypes.HWND,
            ctypes.c_uint,
            wintypes.WPARAM,
            wintypes.LPARAM,
        ]
        self.user32.DefWindowProcW.restype = lresult

        def wndproc(hwnd: int, msg: int, wparam: int, lparam: int) -> int:
            if msg == WM_WTSSESSION_CHANGE:
                callback(int(wparam))
                return 0
            return int(self.user32.DefWindowProcW(hwnd, msg, wparam, lparam))

        proc = wndproc_type(wndproc)

        class WNDCLASSW(ctypes.Structure):
            _fields_ = [
                ("style", ctypes.c_uint),
                ("lpfnWndProc", wndproc_type),
                ("cbClsExtra", ctypes.c_int),
                ("cbWndExtra", ctypes.c_int),
                ("hInstance", wintypes.HINSTANCE),
                ("hIcon", wintypes.HICON),
                ("hCursor", wintypes.HANDLE),
                ("hbrBackground", wintypes.HBRUSH),
                ("lpszMenuName", wintypes.LPCWSTR),
                ("lpszClassName", wintypes.LPCWSTR),
            ]

        hinst = self.kernel32.GetModuleHandleW(None)
        wc = WNDCLASSW()
        wc.lpfnWndProc = proc
        wc.hInstance = hinst
        wc.lpszClassName = "deskcorder-session-watch"
        self.user32.RegisterClassW(ctypes.byref(wc))
        self.user32.CreateWindowExW.restype = wintypes.HWND
        hwnd = self.user32.CreateWindowExW(
            0,
            wc.lpszClassName,
            "deskcorder",
            0,
            0,
            0,
            0,
            0,
            wintypes.HWND(HWND_MESSAGE),
            None,
            hinst,
            None,
        )
        if not hwnd:
            return False
        try:
            if not self.wtsapi32.WTSRegisterSessionNotification(hwnd, NOTIFY_FOR_THIS_SESSION):
                return False
            try:
                self._pump()
            finally:
                self.wtsapi32.WTSUnRegisterSessionNotification(hwnd)
        finally:
            self.user32.DestroyWindow(hwnd)
            self.user32.UnregisterClassW(wc.lpszClassName, hinst)
        return True

    def input_hook_ok(self) -> bool:
        """Whether this process runs in an interactive session (hooks need one)."""
        return bool(self.user32.GetProcessWindowStation())


def load() -> Any:
    """The real Win32 wrapper (raises EnvironmentUnsupported elsewhere)."""
    return Win32()
