"""A desktop with a real accessibility bus: Xvfb + openbox + a D-Bus session bus +
at-spi-bus-launcher, and a GTK 3 form whose widgets are exposed over AT-SPI.

Used by the accessibility tests and bench/bench_a11y.py. Everything is a real
process, started once per test module, waited on by condition and killed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.xserver import XServer, stop_processes, wait_for, xserver

HERE = Path(__file__).parent
LAUNCHER = "/usr/libexec/at-spi-bus-launcher"
FORM_TITLE = "Sign up - Form"


def have_a11y() -> str | None:
    """None when the accessibility stack can run here, else what is missing."""
    if not Path(LAUNCHER).exists() or not shutil.which("dbus-daemon"):
        return "at-spi2-core / dbus not installed (run .ci/setup)"
    probe = [sys.executable, "-c", "import gi; gi.require_version('Atspi', '2.0'); "
             "gi.require_version('Gtk', '3.0')"]  # fmt: skip
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return "PyGObject with the Atspi and Gtk typelibs not importable (run .ci/setup)"
    return None


class Desktop:
    """The X server (its ``env`` carries the session bus) and the GTK form."""

    def __init__(self, x: XServer, procs: list[subprocess.Popen[bytes]]) -> None:
        self.x = x
        self.env = x.env
        self.procs = procs
        self.form: subprocess.Popen[bytes] | None = None
        self.rects: dict[str, list[int]] = {}

    def a11y_bus_ready(self) -> bool:
        out = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.a11y.Bus",
             "/org/a11y/bus", "org.a11y.Bus.GetAddress"],
            env=self.env, capture_output=True, timeout=10, check=False,
        )  # fmt: skip
        return out.returncode == 0 and b"unix:" in out.stdout

    def start_form(self, x: int = 60, y: int = 60) -> None:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "gtkform.py"), FORM_TITLE, str(x), str(y)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        self.form = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once mapped and laid out
        if not line:
            raise AssertionError(f"the GTK form exited ({proc.wait(5)})")
        self.rects = json.loads(line)
        wait_for(lambda: self.x.window_ids(FORM_TITLE), 10, "form window")

    def center(self, widget: str) -> tuple[int, int]:
        x, y, w, h = self.rects[widget]
        return x + w // 2, y + h // 2

    def click(self, widget: str) -> tuple[int, int]:
        x, y = self.center(widget)
        self.x.xdotool("mousemove", str(x), str(y), "click", "1")  # XTEST: in order
        return x, y

    def hang_form(self, hung: bool) -> None:
        """Stop the form's process (it answers nothing, accessibility included) or go on."""
        assert self.form is not None
        os.kill(self.form.pid, signal.SIGSTOP if hung else signal.SIGCONT)


@contextmanager
def a11y_desktop() -> Iterator[Desktop]:
    missing = have_a11y()
    if missing:
        pytest.skip(missing)
    with xserver() as x:
        procs: list[subprocess.Popen[bytes]] = []
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        procs.append(bus)
        try:
            assert bus.stdout is not None
            address = bus.stdout.readline().decode().strip()
            if not address:
                raise AssertionError("dbus-daemon printed no address")
            x.env.update(DBUS_SESSION_BUS_ADDRESS=address, GTK_MODULES="gail:atk-bridge")
            x.env.pop("NO_AT_BRIDGE", None)
            desk = Desktop(x, procs)
            procs.append(
                subprocess.Popen(
                    [LAUNCHER, "--launch-immediately"],
                    env=x.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_for(desk.a11y_bus_ready, 15, "the accessibility bus")
            yield desk
        finally:
            for proc in procs:  # a stopped form must be able to die
                if proc.poll() is None:
                    with suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGCONT)
            stop_processes(procs)
