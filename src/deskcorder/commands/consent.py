"""``deskcorder consent show|accept|withdraw``: the notice and the user's consent receipts.

Receipts and the notice itself are kept by ``deskcorder.capture.consent`` (the
pipeline's consent gate reads them). With a running agent, accept/withdraw go
through it (it writes the receipt and opens or closes the gate at once);
without one, the receipt is written here and read at the next start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from deskcorder.capture.consent import (
    has_consent,
    notice_text,
    receipts,
    request_erasure,
    write_receipt,
)
from deskcorder.control import request
from deskcorder.errors import AgentNotRunning, DeskcorderError
from deskcorder.identity import identities
from deskcorder.policy.model import Policy


def consent_command(action: str, policy: Policy, spool_root: Path, out: TextIO) -> int:
    """``deskcorder consent show|accept|withdraw``: via the running agent when there is one."""
    if action == "show":
        out.write(f"Notice (version {policy.notice.version}):\n{notice_text(policy)}\n")
        state = "accepted" if has_consent(spool_root, policy) else "not accepted"
        need = "required" if policy.notice.require_ack else "not required"
        out.write(f"Consent: {state} (acknowledgement {need} by policy)\n")
        for receipt in receipts(spool_root):
            data = receipt.data
            out.write(
                f"  {data.get('utc')}  {data.get('action')}  notice {data.get('notice_version')}\n"
            )
        return 0
    try:
        reply = request("consent", action=action)
    except AgentNotRunning:
        ids = identities(policy.identity, spool_root)
        path = write_receipt(spool_root, policy, action, user=ids.user, device=ids.device)
        out.write(f"consent {action}ed; receipt {path}\n")
        if action == "withdraw" and request_erasure(spool_root, policy) is not None:
            out.write(_WITHDRAWN)
        return 0
    if not reply.get("ok"):
        raise DeskcorderError(f"consent {action} refused: {reply.get('error', 'unknown error')}")
    out.write(f"consent {action}ed; receipt {reply.get('receipt')}\n")
    if action == "accept":
        out.write("recording may start now\n" if reply.get("capture_allowed") else "")
    else:
        out.write("recording stops now\n" if policy.notice.require_ack else "")
        out.write(_WITHDRAWN if reply.get("erasure") else "")
    return 0


_WITHDRAWN = (
    "uploads stop now; the collector is asked to erase what this device uploaded "
    "(`deskcorder status` shows when it confirms); what is still on this machine stays "
    "here (`deskcorder review delete all` deletes it)\n"
)
