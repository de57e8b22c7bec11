"""Battery and network: what a laptop's state lets the agent do right now.

Policy ``[power]`` decides what happens on battery (screenshots spaced out or
off below a charge, uploads waiting below a charge, neither on a critical
battery); ``upload.on_metered`` whether uploads wait on a metered connection.
The rules are pure functions (:func:`power_rule`, :func:`upload_hold`);
:class:`Conditions` polls the platform's probes (``Backend.power``,
``Backend.network``), keeps the verdict for the screenshot worker and the
uploader, writes a ``power`` record whenever what is captured changes, and
reports it all in ``deskcorder status``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from deskcorder.events import K_POWER, RAW_MARK
from deskcorder.platform import clock
from deskcorder.platform.base import Battery, NetworkProbe, PowerProbe
from deskcorder.policy.model import Policy, Power, Upload

if TYPE_CHECKING:
    from deskcorder.host import Host

log = logging.getLogger(__name__)

POLL_S = 10.0  # battery and network are read this often (each read is cheap)


@dataclass(frozen=True)
class PowerRule:
    """What the power state allows. ``why`` is one line for status and logs."""

    screenshots: Literal["on", "spaced", "off"]
    spacing_s: float  # spaced: at least this long between screenshots
    uploads: bool
    why: str


def _pct(battery: Battery) -> str:
    return "unknown charge" if battery.percent is None else f"{battery.percent:.0f}%"


def power_rule(cfg: Power, battery: Battery | None) -> PowerRule:
    """The rule for this battery reading (None: no battery, a desktop)."""
    if battery is None:
        return PowerRule("on", 0.0, True, "no battery")
    if battery.plugged is not False:  # on mains, or cannot tell: no reason to hold back
        source = "on mains power" if battery.plugged else "power source unknown"
        return PowerRule("on", 0.0, True, f"{source} ({_pct(battery)})")
    pct = battery.percent
    where = f"on battery at {_pct(battery)}"
    if pct is not None and pct <= cfg.critical_percent:
        return PowerRule(
            "off",
            0.0,
            False,
            f"{where}, critical (<= {cfg.critical_percent}%): no screenshots, uploads wait",
        )
    notes: list[str] = []
    shots: Literal["on", "spaced", "off"] = "on"
    spacing = 0.0
    if pct is not None and pct < cfg.screenshots_off_below_percent:
        shots = "off"
        notes.append(f"no screenshots below {cfg.screenshots_off_below_percent}%")
    elif cfg.battery_screenshot_spacing_s > 0:
        shots, spacing = "spaced", cfg.battery_screenshot_spacing_s
        notes.append(f"screenshots at most every {spacing:g} s")
    uploads = not (pct is not None and pct < cfg.uploads_wait_below_percent)
    if not uploads:
        notes.append(f"uploads wait below {cfg.uploads_wait_below_percent}%")
    return PowerRule(shots, spacing, uploads, where + (": " + ", ".join(notes) if notes else ""))


def upload_hold(cfg: Upload, rule: PowerRule, metered: bool | None) -> str | None:
    """Why uploads must wait now (shown as ``waiting: <why>``), or None."""
    if not rule.uploads:
        return rule.why.split(":", 1)[0] + " (policy [power])"
    if metered and cfg.on_metered == "wait":
        return "metered network"
    return None


class Conditions:
    """Polls battery and network; holds the verdict other components read (any thread)."""

    name = "conditions"

    def __init__(
        self,
        policy: Policy,
        power: PowerProbe | None,
        network: NetworkProbe | None,
        poll_s: float = POLL_S,
    ) -> None:
        self.policy = policy
        self._power = power
        self._network = network
        self.poll_s = poll_s
        self.battery: Battery | None = None
        self.metered: bool | None = None
        self.rule = power_rule(policy.power, None)
        self.on_change: list[Callable[[], None]] = []  # e.g. wake the uploader
        self._emit: Callable[[tuple[Any, ...]], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    # -- what others ask ------------------------------------------------------------------
    def upload_hold(self) -> str | None:
        return upload_hold(self.policy.upload, self.rule, self.metered)

    def screenshots(self) -> tuple[bool, float]:
        """(allowed, extra minimum spacing in seconds)."""
        rule = self.rule
        return rule.screenshots != "off", rule.spacing_s

    # -- polling --------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read the probes once; True when the verdict changed (then tell everyone)."""
        battery = self._read(self._power)
        metered = self._read(self._network)
        rule = power_rule(self.policy.power, battery)
        old_rule, old_hold = self.rule, self.upload_hold()
        self.battery, self.metered, self.rule = battery, metered, rule
        capture_changed = (rule.screenshots, rule.spacing_s) != (
            old_rule.screenshots,
            old_rule.spacing_s,
        )
        if capture_changed and self._emit is not None:
            self._emit((RAW_MARK, clock.now_ns(), K_POWER, self.record_fields()))
        if capture_changed or self.upload_hold() != old_hold:
            log.info("power and network: %s; uploads %s", rule.why, self.upload_hold() or "go")
            for callback in self.on_change:
                try:
                    callback()
                except Exception:
                    log.exception("conditions callback failed")
            return True
        return False

    def _read(self, probe: Callable[[], Any] | None) -> Any:
        if probe is None:
            return None
        try:
            return probe()
        except Exception as exc:  # a probe never stops the agent: unknown instead
            self.errors += 1
            log.debug("probe %r failed: %s", probe, exc)
            return None

    def record_fields(self) -> dict[str, Any]:
        b = self.battery
        fields: dict[str, Any] = {
            "battery": b is not None and b.plugged is False,
            "screenshots": self.rule.screenshots,
        }
        if b is not None and b.percent is not None:
            fields["percent"] = round(b.percent)
        if self.rule.screenshots == "spaced":
            fields["spacing_s"] = self.rule.spacing_s
        return fields

    # -- component ------------------------------------------------------------------------
    def start(self, host: Host) -> None:
        self.refresh()
        self._emit = host.emit  # from now on every change is recorded
        if self.rule.screenshots != "on":  # and this one from the start
            host.emit((RAW_MARK, clock.now_ns(), K_POWER, self.record_fields()))
        if self._power is None and self._network is None:
            return
        self._thread = threading.Thread(target=self._run, name="deskcorder-conditions", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, object]:
        b = self.battery
        return {
            "battery": None if b is None else {"percent": b.percent, "plugged": b.plugged},
            "power_rule": self.rule.why,
            "screenshots": self.rule.screenshots,
            "metered": self.metered,
            "upload_hold": self.upload_hold(),
        }
