"""``deskcorder doctor``: will capture work here? Explain every failed check."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from deskcorder.errors import DeskcorderError
from deskcorder.platform.base import Backend, Check
from deskcorder.policy.model import Policy


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
    checks.extend(_spool_checks(spool_dir, loaded.policy if "loaded" in locals() else None))
    try:
        from deskcorder.platform import select_backend

        backend = select_backend(backend_name)
        checks.append(Check("backend", True, backend.name))
        checks.extend(backend.doctor())
        from deskcorder.capture.privacy import doctor_checks

        policy = loaded.policy if "loaded" in locals() else Policy()
        checks.extend(doctor_checks(policy, backend))
        checks.extend(_laptop_checks(policy, backend))
    except DeskcorderError as exc:
        checks.append(Check("backend", False, str(exc)))
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        out.write(f"[{mark}] {check.name}: {check.detail}\n")
    return all(c.ok for c in checks if c.required)


def _spool_checks(spool_dir: Path, policy: Policy | None) -> list[Check]:
    """Writable spool, free space against ``spool.min_free_mb``, a running agent's storage gate."""
    from deskcorder.platform.disk import free_bytes
    from deskcorder.storage.faults import classify, describe
    from deskcorder.storage.spool import Spool

    checks: list[Check] = []
    try:
        Spool(spool_dir).ensure()
        checks.append(Check("spool", True, f"{spool_dir} is writable"))
    except DeskcorderError as exc:
        what, todo = describe(classify(exc)[0])
        checks.append(Check("spool", False, f"{exc} ({what}: {todo})"))
    min_free = (policy or Policy()).spool.min_free_mb
    free = free_bytes(spool_dir)
    if free is not None:
        ok = free >= min_free * 1024 * 1024
        detail = f"{free / 1048576:.0f} MiB free on the spool's disk"
        if min_free:
            detail += f"; capture pauses below {min_free} MiB (spool.min_free_mb)"
        if not ok:
            detail += ": " + describe("low_disk")[1]
        checks.append(Check("disk space", ok, detail, required=False))
    try:
        from deskcorder.control import request

        storage = request("status", timeout=2.0).get("storage")
    except Exception:  # no agent running: nothing more to say
        storage = None
    if isinstance(storage, dict) and storage.get("ok") is False:
        detail = f"{storage.get('what')}: {storage.get('todo')} ({storage.get('error')})"
        checks.append(Check("running agent", False, f"not recording: {detail}", required=False))
    return checks


def _laptop_checks(policy: Policy, backend: Backend) -> list[Check]:
    """What the battery and the network allow now (never a failure: facts of the moment)."""
    from deskcorder.conditions import Conditions

    cond = Conditions(policy, backend.power, backend.network)
    cond.refresh()
    metered = {
        None: "unknown: uploads do not wait for it",
        True: 'metered: uploads wait (upload.on_metered = "wait")'
        if policy.upload.on_metered == "wait"
        else 'metered: uploads go on (upload.on_metered = "upload")',
        False: "not metered",
    }[cond.metered]
    return [
        Check("power", True, cond.rule.why, required=False),
        Check("network", cond.metered is not None, metered, required=False),
    ]
