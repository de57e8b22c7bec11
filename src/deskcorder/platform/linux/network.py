"""Is the connection metered? NetworkManager's ``Metered`` property over D-Bus.

NetworkManager (system bus, ``org.freedesktop.NetworkManager``) sums up the
primary connection as ``NMMetered``: 0 unknown, 1 yes, 2 no, 3 guess-yes
(e.g. a phone's hotspot, detected), 4 guess-no. Read with ``gdbus call`` like
the logind probe (:mod:`deskcorder.platform.linux.session`). Without
NetworkManager, gdbus or a bus the answer is None: unknown, so nothing waits.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from deskcorder.platform.linux.session import Runner

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
METERED = {1: True, 3: True, 2: False, 4: False}  # NMMetered -> metered?


def run_gdbus(args: list[str], timeout: float) -> tuple[int, str]:
    """Run gdbus; (returncode, stdout, or stderr when it failed). Never raises."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, str(exc)
    return out.returncode, out.stdout if out.returncode == 0 else out.stderr


def parse_gdbus_uint32(text: str) -> int | None:
    """``(<uint32 4>,)`` -> 4."""
    m = re.search(r"<uint32 (\d+)>", text)
    return None if m is None else int(m.group(1))


class NetworkManagerProbe:
    """``Backend.network`` on Linux: True metered, False not, None unknown."""

    def __init__(self, run: Runner = run_gdbus, bus: str = "system") -> None:
        self._run = run
        self.bus = bus  # "session" in tests (a mock NetworkManager, python-dbusmock)
        self.last_error: str | None = None

    def __call__(self) -> bool | None:
        gdbus = shutil.which("gdbus")
        if gdbus is None:
            self.last_error = "gdbus not installed"
            return None
        args = [gdbus, "call", f"--{self.bus}", "--dest", NM, "--object-path", NM_PATH]
        args += ["--method", "org.freedesktop.DBus.Properties.Get", NM, "Metered"]
        code, out = self._run(args, 2.0)
        if code != 0:
            self.last_error = out.strip().splitlines()[-1] if out.strip() else f"exit {code}"
            return None
        self.last_error = None
        value = parse_gdbus_uint32(out)
        return None if value is None else METERED.get(value)
