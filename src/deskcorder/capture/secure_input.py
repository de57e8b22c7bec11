"""Secure input: is the user typing into a password field right now?

The probe itself is the platform's (``Backend.secure_input`` finds it: AT-SPI
on Linux in ``platform/linux/secure_input.py``, UI Automation on Windows in
``platform/windows/secure_input.py``, Secure Event Input on macOS in
``platform/macos``). This module is the OS-neutral part:

:class:`SecureInputMonitor` polls (or listens) on its own thread and keeps the
latest answer, so the pipeline only reads a cached value. ``current()``
returns True (password field), False (not), or None (unknown: treated as
secure by the key filter only after the probe has failed; a backend without
a probe means "no probe"). Where no probe is available, ``keystrokes =
"full"`` degrades to ``"redacted"`` and ``deskcorder doctor`` says so.
"""

from __future__ import annotations

import threading

from deskcorder.platform.base import SecureProbe

Probe = SecureProbe


class SecureInputMonitor:
    """Polls ``probe`` every ``interval`` seconds on its own thread; ``current()`` is cheap.

    A probe that raises makes ``current()`` return None (the key filter treats
    that as secure: fail closed).
    """

    def __init__(self, probe: Probe, interval: float = 0.1) -> None:
        self.probe = probe
        self.interval = interval
        self._value: bool | None = None  # unknown until the first poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def poll(self) -> bool | None:
        try:
            value = self.probe()
        except Exception:
            self.failures += 1
            value = None
        self._value = value
        return value

    def current(self) -> bool | None:
        return self._value

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(
            target=self._run, name="deskcorder-secure-input", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def effective_keystrokes(mode: str, have_probe: bool) -> str:
    """``full`` needs a secure-input probe; without one it degrades to ``redacted``."""
    if mode == "full" and not have_probe:
        return "redacted"
    return mode
