"""Run ``deskcorder run --backend x11`` as a subprocess against a test X server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from deskcorder import read_session
from tests.xserver import XServer, wait_for

DESKCORDER = [sys.executable, "-m", "deskcorder"]

EXACT_POLICY = """\
[capture]
keystrokes = "full"
mouse_move_hz = 0

[spool]
flush_interval_s = 0.2
"""


class AgentProcess:
    """One agent with its own spool and runtime dir; killed on exit whatever happens."""

    def __init__(
        self, x: XServer, tmp: Path, policy: str = EXACT_POLICY, spool: Path | None = None
    ) -> None:
        self.spool = spool or tmp / "spool"
        self.runtime = tmp / "run"
        self.runtime.mkdir(mode=0o700, exist_ok=True)
        policy_file = tmp / "policy.toml"
        policy_file.write_text(policy)
        self.env = {**x.env, "DESKCORDER_RUNTIME_DIR": str(self.runtime)}
        self.env.pop("XDG_SESSION_TYPE", None)
        self.log = tmp / "agent.log"
        self._log_fh = open(self.log, "wb")  # noqa: SIM115 - closed in close()
        args = ["run", "--backend", "x11", "--spool", str(self.spool), "--policy", str(policy_file)]
        self.proc = subprocess.Popen(
            [*DESKCORDER, *args], env=self.env, stdout=self._log_fh, stderr=subprocess.STDOUT
        )

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log_fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        """The control socket answers; it starts after every capture hook is live."""
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.output()}")
        out = subprocess.run(
            [*DESKCORDER, "status"], env=self.env, capture_output=True, timeout=10, check=False
        )
        return out.returncode == 0

    def wait_ready(self, timeout: float = 20) -> None:
        wait_for(self.ready, timeout, "agent ready (control socket answers)")

    def session_dir(self) -> Path | None:
        dirs = sorted((self.spool / "sessions").glob("*"))
        return dirs[0] if dirs else None

    def records(self) -> list[dict[str, Any]]:
        """Everything written so far, the open chunk read tolerantly."""
        directory = self.session_dir()
        if directory is None:
            return []
        try:
            return list(read_session(directory).records())
        except Exception:
            return []  # a chunk being rotated right now; the caller polls again

    def cli(self, *args: str) -> str:
        """Run another deskcorder command against this agent (its runtime dir); stdout."""
        done = subprocess.run(
            [*DESKCORDER, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def wait_record(self, match: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for rec in self.records():
                if all(_get(rec, key) == value for key, value in match.items()):
                    return rec
            return None

        found = wait_for(find, timeout, f"a record matching {match}")
        assert isinstance(found, dict)
        return found

    def terminate(self) -> float:
        """SIGTERM; seconds until the process exited (fails after 5 s)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(5)
        return time.monotonic() - start


def _get(rec: dict[str, Any], dotted: str) -> Any:
    value: Any = rec
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
