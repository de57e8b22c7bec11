"""Notice and consent: show the notice, keep receipts, gate capture on acknowledgement.

Receipts are JSON files under ``<spool>/state/consent/`` (format documented
in docs/privacy.md), one per acceptance, never rewritten::

    <spool>/state/consent/20261127T031500Z-<notice-version-digest8>.json
    {"format": "deskcorder-consent", "format_version": 1, "action": "accept",
     "notice_version": "2026-11", "notice_sha256": "...", "policy_digest": "...",
     "user": "u-...", "device": "d-...", "utc": "2026-11-27T03:15:00Z"}

``action`` is ``accept`` or ``withdraw`` (``deskcorder consent withdraw``).
The latest receipt for the current notice version decides (the pipeline's
consent gate reads it). ``<spool>/state/notice-shown.json`` remembers which
notice version was last shown, so the notice is shown at first run and
whenever its version changes. The ``deskcorder consent`` command is
``deskcorder.commands.consent``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from deskcorder.platform.desktop import send_notification
from deskcorder.policy.model import Policy

log = logging.getLogger(__name__)

RECEIPT_FORMAT = "deskcorder-consent"
RECEIPT_VERSION = 1


def consent_dir(spool_root: Path) -> Path:
    return Path(spool_root) / "state" / "consent"


def notice_sha256(policy: Policy) -> str:
    return hashlib.sha256(policy.notice.text.encode()).hexdigest()


@dataclass(frozen=True)
class Receipt:
    path: Path
    data: dict[str, Any]

    @property
    def action(self) -> str:
        return str(self.data.get("action"))

    @property
    def notice_version(self) -> str:
        return str(self.data.get("notice_version"))


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def write_receipt(
    spool_root: Path,
    policy: Policy,
    action: str,
    *,
    user: str | None,
    device: str,
    now: datetime | None = None,
) -> Path:
    """Write one receipt atomically (tmp + fsync + rename); return its path."""
    if action not in ("accept", "withdraw"):
        raise ValueError(f"unknown consent action {action!r}")
    now = now or _utc_now()
    directory = consent_dir(spool_root)
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "format": RECEIPT_FORMAT,
        "format_version": RECEIPT_VERSION,
        "action": action,
        "notice_version": policy.notice.version,
        "notice_sha256": notice_sha256(policy),
        "policy_digest": policy.digest(),
        "user": user,
        "device": device,
        "utc": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    version_tag = hashlib.sha256(policy.notice.version.encode()).hexdigest()[:8]
    stem = f"{now:%Y%m%dT%H%M%S%fZ}-{action}-{version_tag}"
    path = directory / f"{stem}.json"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def receipts(spool_root: Path) -> list[Receipt]:
    """Every readable receipt, oldest first (unreadable files are skipped and logged)."""
    directory = consent_dir(spool_root)
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("unreadable consent receipt %s", path)
            continue
        if isinstance(data, dict) and data.get("format") == RECEIPT_FORMAT:
            out.append(Receipt(path, data))
    return out


def has_consent(spool_root: Path, policy: Policy) -> bool:
    """True if the latest receipt for the current notice version is an acceptance.

    Any error reading receipts means no consent (fail closed).
    """
    try:
        mine = [r for r in receipts(spool_root) if r.notice_version == policy.notice.version]
        return bool(mine) and mine[-1].action == "accept"
    except Exception:
        log.exception("consent receipts unreadable; treating as not accepted")
        return False


def capture_allowed(spool_root: Path, policy: Policy) -> bool:
    """Capture may start: the notice needs no acknowledgement, or it has been accepted."""
    return not policy.notice.require_ack or has_consent(spool_root, policy)


# ---------------------------------------------------------------------------
# showing the notice
# ---------------------------------------------------------------------------


def _shown_path(spool_root: Path) -> Path:
    return Path(spool_root) / "state" / "notice-shown.json"


def notice_due(spool_root: Path, policy: Policy) -> bool:
    """First run, or the notice version changed since it was last shown."""
    try:
        data = json.loads(_shown_path(spool_root).read_text(encoding="utf-8"))
        return bool(data.get("notice_version") != policy.notice.version)
    except (OSError, ValueError, AttributeError):
        return True


def mark_notice_shown(spool_root: Path, policy: Policy, how: str) -> None:
    path = _shown_path(spool_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "notice_version": policy.notice.version,
                "how": how,
                "utc": _utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        + "\n",
        encoding="utf-8",
    )


def notice_text(policy: Policy) -> str:
    text = policy.notice.text.strip()
    if policy.notice.require_ack:
        text += " Nothing is recorded until you run `deskcorder consent accept`."
    return text


def show_notice(
    spool_root: Path, policy: Policy, *, force: bool = False, out: TextIO | None = None
) -> str | None:
    """Show the notice if due (or ``force``): desktop notification, else the terminal.

    Returns how it was shown (``notification`` / ``terminal``) or None if not due.
    """
    if not force and not notice_due(spool_root, policy):
        return None
    text = notice_text(policy)
    title = f"deskcorder is recording (notice {policy.notice.version})"
    how = "notification" if send_notification(title, text, "critical") else "terminal"
    stream = out or sys.stderr  # the terminal too, always: overt, and logged by services
    stream.write(f"{title}\n{text}\n")
    stream.flush()
    mark_notice_shown(spool_root, policy, how)
    return how


ERASURE_REQUEST = "erasure-request.json"


def request_erasure(spool_root: Path, policy: Policy) -> Path | None:
    """After a withdrawal: ask the uploader to have the collector erase this device's data.

    Written to ``<spool>/state/erasure-request.json``; the uploader (which
    stops uploading chunks as soon as the withdrawal receipt exists) sends
    it, and keeps the collector's confirmation in ``erasure-done.json``.
    None when nothing is uploaded (no ``upload.endpoint``).
    """
    if not policy.upload.endpoint:
        return None
    path = Path(spool_root) / "state" / ERASURE_REQUEST
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = {"format": "deskcorder-erasure-request", "requested": _utc_now().isoformat()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
