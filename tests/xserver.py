"""A real X server for tests: Xvfb (+ openbox), xdotool, and simple Tk windows.

Used by the end-to-end, privacy and screenshot tests. Everything here starts
real processes and waits on conditions (never bare sleeps); every process is
killed on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def have_xvfb() -> bool:
    return all(shutil.which(b) for b in ("Xvfb", "xdotool", "xprop"))


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll ``cond`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


class XServer:
    def __init__(self, display: str, procs: list[subprocess.Popen[bytes]]) -> None:
        self.display = display
        self.procs = procs
        self.env = {**os.environ, "DISPLAY": display}
        self.env.pop("WAYLAND_DISPLAY", None)

    def run(self, *args: str, check: bool = True, timeout: float = 10) -> str:
        out = subprocess.run(args, env=self.env, capture_output=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"{args} failed: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode(errors="replace")

    def xdotool(self, *args: str) -> str:
        return self.run("xdotool", *args)

    def window_ids(self, title: str) -> list[str]:
        out = self.run("xdotool", "search", "--name", f"^{title}$", check=False)
        return out.split()

    def tk_window(
        self,
        title: str,
        *,
        x: int = 100,
        y: int = 100,
        width: int = 400,
        height: int = 300,
        color: str = "white",
    ) -> subprocess.Popen[bytes]:
        """Start a Tk window with ``title`` and a text entry; wait until it is mapped.

        Writing a line to its stdin changes its title to that line.
        """
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "tkwin.py"), title, f"{width}x{height}+{x}+{y}", color],
            env=self.env,
            stdin=subprocess.PIPE,
        )
        self.procs.append(proc)
        wait_for(lambda: self.window_ids(title), 15, f"window {title!r}")
        return proc

    def activate(self, title: str) -> str:
        wid = self.window_ids(title)[0]
        self.xdotool("windowactivate", "--sync", wid)
        wait_for(lambda: self.xdotool("getactivewindow").strip() == wid, 5, f"{title} active")
        return wid


def start_openbox(server: XServer, timeout: float = 30.0) -> None:
    """Start openbox and wait until it manages the screen; restart it once if it exits.

    On failure the error says what openbox printed and whether it exited, so a
    slow machine and a broken display can be told apart.
    """
    with tempfile.TemporaryFile() as log:
        for _attempt in (1, 2):
            ob = subprocess.Popen(
                ["openbox", "--sm-disable"], env=server.env, stdout=log, stderr=subprocess.STDOUT
            )
            server.procs.append(ob)

            def managed(ob: subprocess.Popen[bytes] = ob) -> bool:
                if ob.poll() is not None:
                    return True  # exited: stop waiting; handled below
                out = server.run("xprop", "-root", "_NET_SUPPORTING_WM_CHECK", check=False)
                return "_NET_SUPPORTING_WM_CHECK(WINDOW)" in out

            with suppress(AssertionError):
                wait_for(managed, timeout, "openbox")
            if ob.poll() is None:
                if managed():
                    return
                break  # still running but not managing: restarting would not help
        log.seek(0)
        printed = log.read().decode(errors="replace")[-2000:]
    raise AssertionError(
        f"openbox did not manage display {server.display} within {timeout}s "
        f"(exit code {ob.poll()}); it printed: {printed!r}"
    )


@contextmanager
def xserver(wm: bool = True, size: str = "1920x1080x24") -> Iterator[XServer]:
    """Start Xvfb on a free display (``-displayfd``), optionally openbox."""
    if not have_xvfb():
        pytest.skip("Xvfb/xdotool/xprop not installed (run .ci/run to install them)")
    r, w = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    procs: list[subprocess.Popen[bytes]] = [xvfb]
    try:
        with os.fdopen(r) as fh:
            number = fh.readline().strip()
        if not number:
            raise AssertionError("Xvfb did not report a display number")
        server = XServer(f":{number}", procs)
        if wm:
            start_openbox(server)
        yield server
    finally:
        stop_processes(procs)


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate (then kill) every process, newest first, and wait for each; close pipes."""
    for proc in reversed(procs):
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
