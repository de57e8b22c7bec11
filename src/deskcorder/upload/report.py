"""Human lines for the uploader's part of ``deskcorder status`` and ``inspect``."""

from __future__ import annotations

from typing import Any


def _mib(n: Any) -> str:
    return f"{(n or 0) / 1_048_576:.1f} MiB"


def status_lines(u: dict[str, Any]) -> list[str]:
    """The uploader's ``status()`` dict as indented lines."""
    state = str(u.get("state", "?"))
    if u.get("next_retry_in_s") is not None:
        state += f", next try in {u['next_retry_in_s']} s"
    enrolled = "enrolled" if u.get("enrolled") else "not enrolled"
    lines = [
        f"  upload   to {u.get('endpoint')}: {state} ({enrolled})",
        f"  chunks   {u.get('chunks_pending', 0)} chunks pending ({_mib(u.get('bytes_pending'))}),"
        f" {u.get('chunks_rejected', 0)} rejected, {u.get('chunks_uploaded', 0)} uploaded"
        f" since start ({_mib(u.get('bytes_uploaded'))})",
        f"  last ok  {u.get('last_success') or 'never'}",
    ]
    if u.get("revoked"):
        lines.append(
            "  STOPPED  the collector's administrator revoked this device: nothing is uploaded;"
            f" recording goes on and {u.get('chunks_pending', 0)} chunk(s) are kept on this"
            " machine until the device is readmitted"
        )
    elif u.get("consent_withdrawn"):
        lines.append(
            "  STOPPED  you withdrew your consent: nothing more is uploaded"
            " (`deskcorder consent accept` to resume)"
        )
    if u.get("erasure_pending"):
        lines.append("  erasure  requested; sent to the collector at the next connection")
    elif isinstance(u.get("erasure"), dict):
        erased = u["erasure"].get("erased") or {}
        lines.append(
            f"  erasure  confirmed {u['erasure'].get('confirmed')}: "
            + ", ".join(f"{v} {k}" for k, v in erased.items())
        )
    if u.get("chunks_awaiting_review"):
        lines.append(
            f"  review   {u['chunks_awaiting_review']} chunk(s) wait for `deskcorder review`"
        )
    if u.get("last_error"):
        lines.append(f"  error    {u['last_error']}")
    if u.get("chunks_rejected"):
        lines.append("  rejected chunks are kept in the spool's rejected/ folder; see inspect")
    return lines


def rejected_lines(rejected: list[dict[str, Any]]) -> list[str]:
    """One line per chunk the collector refused (for ``deskcorder inspect``)."""
    if not rejected:
        return []
    lines = [f"\nRejected by the collector (kept, not retried): {len(rejected)} chunk(s)"]
    for r in rejected:
        status = f"HTTP {r['status']}" if r.get("status") else "local"
        lines.append(f"  {r['session']}/{r['seq']:06d}  {status}  {r['at']}  {r['reason']}")
    return lines
