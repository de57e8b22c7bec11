"""``deskcorder doctor``: will capture work here? Explain every failed check."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from deskcorder.errors import DeskcorderError
from deskcorder.platform.base import Check


def run_doctor(
    policy_file: str | None, spool_dir: Path, backend_name: str | None, out: TextIO
) -> bool:
    """Print one line per check; True when every required check passed."""
    checks: list[Check] = []
    try:
        from deskcorder.policy.load import load_policy
        from deskcorder.policy.managed import managed_layers

        loaded = load_policy(policy_file, extra_machine_layers=managed_layers)
        files = ", ".join(loaded.files) or "built-in defaults"
        checks.append(Check("policy", True, f"valid ({files})"))
    except DeskcorderError as exc:
        checks.append(Check("policy", False, str(exc)))
    try:
        from deskcorder.storage.spool import Spool

        Spool(spool_dir).ensure()
        checks.append(Check("spool", True, f"{spool_dir} is writable"))
    except DeskcorderError as exc:
        checks.append(Check("spool", False, str(exc)))
    try:
        from deskcorder.platform import select_backend

        backend = select_backend(backend_name)
        checks.append(Check("backend", True, backend.name))
        checks.extend(backend.doctor())
        from deskcorder.capture.privacy import doctor_checks
        from deskcorder.policy.model import Policy

        policy = loaded.policy if "loaded" in locals() else Policy()
        checks.extend(doctor_checks(policy, backend))
    except DeskcorderError as exc:
        checks.append(Check("backend", False, str(exc)))
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        out.write(f"[{mark}] {check.name}: {check.detail}\n")
    return all(c.ok for c in checks if c.required)
