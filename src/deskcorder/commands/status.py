"""Formatting of ``deskcorder status`` replies (the data comes from the running agent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

_WHY = {
    "user": "paused by you",
    "lock": "screen locked",
    "inactive": "session not active",
    "schedule": "outside work hours",
    "consent": "waiting for you to accept the notice (`deskcorder consent accept`)",
    "quota": "spool full",
    "error": "a privacy check failed (fail closed)",
    "storage": "the spool cannot be written",
}


def _mb(n: Any) -> str:
    return f"{(n or 0) / 1_048_576:.1f} MiB"


def format_status(s: dict[str, Any]) -> str:
    lines = []
    raw_storage = s.get("storage")
    storage: dict[str, Any] = raw_storage if isinstance(raw_storage, dict) else {}
    if s.get("recording"):
        state = "recording"
    elif s.get("blocked") == "storage" and storage.get("what"):
        state = f"not recording: {storage['what']}"
    elif s.get("blocked"):
        state = f"not recording: {_WHY.get(s['blocked'], s['blocked'])}"
    elif s.get("excluded"):
        state = "not recording: the focused window is excluded by policy"
    else:
        state = "not recording"
    lines.append(f"deskcorder {s.get('agent', '?')} (pid {s.get('pid', '?')}): {state}")
    left = s.get("gate_pause_left_s")
    if s.get("blocked") == "user":
        lines.append(
            "  pause    "
            + (f"{left // 60} min {left % 60} s left" if left is not None else "until you resume")
        )
    lines.append(f"  session  {s.get('session')}  ({s.get('chunks_sealed', 0)} chunk(s) sealed)")
    lines.append(
        f"  queue    {s.get('queue', 0)}/{s.get('queue_max', 0)}; "
        f"events dropped: {s.get('dropped', 0)}"
    )
    lines.append(
        f"  spool    {_mb(s.get('spool_bytes'))} of {_mb(s.get('spool_quota_bytes'))} "
        f"at {s.get('spool')}"
    )
    lines.extend(storage_lines(storage))
    cond = s.get("conditions")
    if isinstance(cond, dict):
        metered = cond.get("metered")
        net = "unknown" if metered is None else "metered" if metered else "not metered"
        lines.append(f"  power    {cond.get('power_rule')}; network {net}")
    privacy = s.get("privacy")
    if isinstance(privacy, dict):
        keys = privacy.get("keystrokes")
        if keys != privacy.get("keystrokes_policy"):
            keys = f"{keys} (policy says {privacy.get('keystrokes_policy')}; no accessibility API)"
        lines.append(f"  keys     {keys}; secure input: {privacy.get('secure_input')}")
        if privacy.get("elements"):
            lines.append("  elements recorded (role, scrubbed name, bounds of clicked elements)")
        change = privacy.get("schedule_next_change_utc")
        if change:
            lines.append(f"  schedule work hours apply; next change at {change}")
    tray = s.get("tray")
    if isinstance(tray, dict):
        shown = "shown" if tray.get("shown") else f"not shown ({tray.get('unavailable')})"
        lines.append(f"  tray     {shown}")
    upload = s.get("uploader")
    if isinstance(upload, dict):
        from deskcorder.upload.report import status_lines

        lines.extend(status_lines(upload))
    else:
        lines.append("  upload   off (policy upload.endpoint is empty)")
    return "\n".join(lines)


def storage_lines(storage: dict[str, Any]) -> list[str]:
    """The spool's disk: free space, and while writing fails what happened and what to do."""
    if not storage:
        return []
    free = storage.get("free_mb")
    line = "  disk     " + ("free space unknown" if free is None else f"{free:.0f} MiB free")
    if storage.get("min_free_mb"):
        line += f"; capture pauses below {storage['min_free_mb']} MiB (spool.min_free_mb)"
    lines = [line]
    if storage.get("ok") is False:
        since = storage.get("since_unix")
        when = (
            datetime.fromtimestamp(since).astimezone().strftime("%H:%M:%S")
            if isinstance(since, int | float)
            else "?"
        )
        lines.append(f"  storage  {storage.get('what')} since {when}: {storage.get('todo')}")
        lines.append(
            f"           {storage.get('not_recorded', 0)} input event(s) not recorded so far; "
            f"next try in {storage.get('retry_in_s', 0):.0f} s ({storage.get('error')})"
        )
    if storage.get("unsealed_journals"):
        lines.append(
            f"           {storage['unsealed_journals']} chunk(s) to seal once there is room"
        )
    return lines
