"""Privacy wiring for the agent: accessibility monitor, notice, consent control, doctor checks.

The agent builds one :class:`PrivacyComponent` before the pipeline (it decides
the effective keystroke mode and supplies the accessibility monitor whose
secure-input answers the key filter reads) and starts it right after the
pipeline, before any input source (starts the monitor, shows the notice when
due, answers the ``consent`` control command).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

from deskcorder.capture.a11y import AccessibilityMonitor
from deskcorder.events import RAW_CONTROL
from deskcorder.host import Host
from deskcorder.platform import clock
from deskcorder.platform.base import Accessibility, Backend, Check
from deskcorder.platform.desktop import has_display, tray_manager_present
from deskcorder.policy.model import Policy

log = logging.getLogger(__name__)


def select_accessibility(backend: Backend) -> tuple[str, Accessibility | None]:
    """(what it is or why there is none, the accessibility API) from the backend's finder."""
    if backend.accessibility is None:
        return f"none ({backend.name} backend)", None
    try:
        found = backend.accessibility()
    except Exception as exc:  # a broken accessibility stack: no probe (full degrades)
        log.warning("accessibility unavailable: %s", exc, exc_info=True)
        return f"unavailable ({exc})", None
    return found.description, found.probe


def effective_keystrokes(mode: str, have_probe: bool) -> str:
    """``full`` needs a secure-input probe; without one it degrades to ``redacted``."""
    if mode == "full" and not have_probe:
        return "redacted"
    return mode


class PrivacyComponent:
    name = "privacy"

    def __init__(self, policy: Policy, backend: Backend) -> None:
        self.policy = policy
        self.probe_desc, acc = select_accessibility(backend)
        cap = policy.capture
        self.monitor = (
            AccessibilityMonitor(
                acc, elements=cap.elements, unverified_apps=cap.unverified_text_apps
            )
            if acc is not None
            else None
        )
        self.keystrokes = effective_keystrokes(cap.keystrokes, acc is not None)
        self.degraded = self.keystrokes != cap.keystrokes
        self.elements = cap.elements and acc is not None
        if cap.elements and acc is None:
            log.warning("capture.elements needs accessibility (%s): no elements", self.probe_desc)
        self.notice_shown: str | None = None
        self._host: Host | None = None
        if self.degraded:
            log.warning(
                "keystrokes = full needs a secure-input probe (%s): recording redacted",
                self.probe_desc,
            )

    def start(self, host: Host) -> None:
        self._host = host
        if self.monitor is not None:
            self.monitor.start(host.emit)
        host.control_handlers["consent"] = self._handle_consent

    def announce(self) -> None:
        """Show the notice if due; called once capture has started (not before a refusal)."""
        assert self._host is not None
        from deskcorder.capture.consent import show_notice

        try:
            self.notice_shown = show_notice(self._host.spool.root, self.policy)
        except OSError as exc:  # the spool's disk is full or read-only: shown again next start
            log.warning("could not note that the notice was shown: %s", exc)
        except Exception:
            log.exception("showing the notice failed")

    def _handle_consent(self, req: dict[str, Any]) -> dict[str, Any]:
        """``{"cmd": "consent", "action": "accept"|"withdraw"}``: write a receipt, gate."""
        host = self._host
        assert host is not None
        from deskcorder.capture.consent import has_consent, request_erasure, write_receipt

        action = req.get("action")
        if action not in ("accept", "withdraw"):
            raise ValueError("action must be accept or withdraw")
        path = write_receipt(
            host.spool.root, self.policy, action, user=host.user_id, device=host.device_id
        )
        ok = not self.policy.notice.require_ack or has_consent(host.spool.root, self.policy)
        host.emit_control((RAW_CONTROL, clock.now_ns(), "consent", ok))
        erasure = request_erasure(host.spool.root, self.policy) if action == "withdraw" else None
        return {"receipt": str(path), "capture_allowed": ok, "erasure": erasure is not None}

    def stop(self, timeout: float) -> None:
        if self.monitor is not None:
            self.monitor.stop(timeout)

    def status(self) -> dict[str, object]:
        return {
            "keystrokes": self.keystrokes,
            "keystrokes_policy": self.policy.capture.keystrokes,
            "secure_input": self.probe_desc,
            "secure_input_now": self.monitor.answer().state if self.monitor else None,
            "elements": self.elements,
            "accessibility": self.monitor.status() if self.monitor else None,
            "notice_version": self.policy.notice.version,
            "schedule_next_change_utc": self._next_schedule_change(),
        }

    def _next_schedule_change(self) -> str | None:
        if not self.policy.schedule.enabled:
            return None
        from datetime import datetime, timezone

        from deskcorder.capture.schedule import WorkHours

        ts = WorkHours(self.policy.schedule).next_change(time.time())
        if ts is None:
            return None
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def doctor_checks(policy: Policy, backend: Backend) -> list[Check]:
    """Privacy lines of ``deskcorder doctor`` (warnings, never failures)."""
    checks = []
    desc, probe = select_accessibility(backend)
    mode = policy.capture.keystrokes
    if probe is None:
        detail = f"no probe: {desc}"
        if mode == "full":
            detail += "; keystrokes = full degrades to redacted (no typed text is recorded)"
        checks.append(Check("secure input", mode != "full", detail, required=False))
        if policy.capture.elements:
            checks.append(
                Check("elements", False, f"capture.elements needs accessibility: {desc}", False)
            )
    else:
        checks.append(Check("secure input", True, desc, required=False))
    display = has_display()
    try:
        import importlib.util

        have_pystray = importlib.util.find_spec("pystray") is not None
    except (ImportError, ValueError):
        have_pystray = False
    if not have_pystray:
        checks.append(
            Check(
                "tray icon",
                False,
                "pystray not installed (pip install 'deskcorder[tray]'); a notification is "
                "shown at start instead",
                required=False,
            )
        )
    elif not display:
        checks.append(
            Check("tray icon", False, "no display; a notification is shown instead", False)
        )
    else:
        if tray_manager_present() is False:
            checks.append(
                Check(
                    "tray icon",
                    False,
                    "no system tray on this desktop; a notification is shown at start instead",
                    required=False,
                )
            )
        else:
            checks.append(Check("tray icon", True, "pystray available", required=False))
    notify = shutil.which("notify-send")
    checks.append(
        Check(
            "notifications",
            notify is not None or os.name == "nt",
            notify or "notify-send not found (libnotify-bin); the notice goes to the terminal",
            required=False,
        )
    )
    return checks
