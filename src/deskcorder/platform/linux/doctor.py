"""``deskcorder doctor`` checks for the X11 backend, plus layout and screen queries."""

from __future__ import annotations

import os
import shutil
from typing import Any

from deskcorder.platform.base import Check
from deskcorder.platform.linux import accessibility
from deskcorder.platform.linux.input import wayland_session
from deskcorder.platform.linux.session import LogindSessionProbe


def _open(display: str | None) -> Any:
    from Xlib import display as xdisplay

    return xdisplay.Display(display)


def doctor_checks(display: str | None = None, env: dict[str, str] | None = None) -> list[Check]:
    """One Check per thing capture needs; required ones make doctor fail."""
    env = dict(os.environ) if env is None else env
    checks: list[Check] = []
    if wayland_session(env):
        checks.append(
            Check(
                "wayland",
                False,
                "Wayland session: global input capture is impossible there and only "
                "XWayland windows would be seen; deskcorder refuses to record. "
                "Log in to an X11 session (e.g. 'Ubuntu on Xorg') instead",
            )
        )
    name = display or env.get("DISPLAY", "")
    if not name:
        checks.append(Check("display", False, "DISPLAY is not set (no X session here)"))
        return checks
    try:
        conn = _open(name)
    except Exception as exc:  # any failure means: unreachable
        checks.append(Check("display", False, f"cannot connect to X display {name}: {exc}"))
        return checks
    try:
        checks.append(
            Check("display", True, f"X display {name} reachable ({conn.get_display_name()})")
        )
        checks.append(
            Check(
                "record-extension",
                conn.has_extension("RECORD"),
                "RECORD extension present (global input capture)"
                if conn.has_extension("RECORD")
                else "X server lacks the RECORD extension: input cannot be captured",
            )
        )
        xres = conn.has_extension("X-Resource")
        checks.append(
            Check(
                "xres-extension",
                xres,
                "X-Resource present (process of windows without _NET_WM_PID)"
                if xres
                else "X-Resource missing: some windows will have no process",
                required=False,
            )
        )
        root = conn.screen().root
        supported = root.get_full_property(conn.intern_atom("_NET_SUPPORTED"), 0)
        active = conn.intern_atom("_NET_ACTIVE_WINDOW")
        has_active = supported is not None and active in list(supported.value)
        checks.append(
            Check(
                "window-manager",
                has_active,
                "window manager publishes _NET_ACTIVE_WINDOW"
                if has_active
                else "no EWMH window manager (_NET_ACTIVE_WINDOW missing): events will be "
                "recorded with an unknown window",
                required=False,
            )
        )
    finally:
        conn.close()
    try:
        import pynput.keyboard  # import needs the display; that is the check
        import pynput.mouse  # noqa: F401

        checks.append(Check("pynput", True, "pynput X11 backend loads"))
    except Exception as exc:
        checks.append(Check("pynput", False, f"pynput cannot load: {exc}"))
    layout = keyboard_layout(name)
    checks.append(
        Check(
            "keyboard-layout",
            layout is not None,
            f"XKB layout {layout} (written into session headers)"
            if layout
            else "XKB layout unknown (_XKB_RULES_NAMES missing); key characters are still "
            "recorded as typed",
            required=False,
        )
    )
    lock = LogindSessionProbe().available()
    checks.append(
        Check(
            "lock-detection",
            lock,
            "screen lock read from systemd-logind (LockedHint)"
            if lock
            else "screen lock state unknowable (no logind session over D-Bus"
            + ("" if shutil.which("gdbus") else ", gdbus not installed")
            + "): capture will not pause on lock",
            required=False,
        )
    )
    checks += accessibility.doctor_checks(env)
    return checks


def keyboard_layout(display: str | None = None) -> str | None:
    """XKB layout from the root's ``_XKB_RULES_NAMES`` (e.g. ``us`` or ``us,de(nodeadkeys)``)."""
    try:
        conn = _open(display)
    except Exception:
        return None
    try:
        prop = conn.screen().root.get_full_property(conn.intern_atom("_XKB_RULES_NAMES"), 0)
        if prop is None:
            return None
        raw = prop.value
        parts = (raw.encode() if isinstance(raw, str) else bytes(raw)).split(b"\0")
        # rules, model, layout, variant, options
        layouts = parts[2].decode(errors="replace").split(",") if len(parts) > 2 else []
        variants = parts[3].decode(errors="replace").split(",") if len(parts) > 3 else []
        out = []
        for i, layout in enumerate(layouts):
            variant = variants[i] if i < len(variants) else ""
            out.append(f"{layout}({variant})" if variant else layout)
        return ",".join(o for o in out if o) or None
    except Exception:
        return None
    finally:
        conn.close()


def screens(display: str | None = None) -> list[tuple[int, int, int, int]]:
    """Monitors as (left, top, width, height): RandR 1.5 monitors, else the root window."""
    try:
        conn = _open(display)
    except Exception:
        return []
    try:
        root = conn.screen().root
        if conn.has_extension("RANDR"):
            try:
                reply = root.xrandr_get_monitors()
                mons = [(m.x, m.y, m.width_in_pixels, m.height_in_pixels) for m in reply.monitors]
                if mons:
                    return [tuple(int(v) for v in m) for m in mons]  # type: ignore[misc]
            except Exception:  # RandR < 1.5
                pass
        geo = root.get_geometry()
        return [(0, 0, int(geo.width), int(geo.height))]
    finally:
        conn.close()
