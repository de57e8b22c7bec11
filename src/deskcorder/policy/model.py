"""The IT policy: everything an organisation decides about capture.

Validation only: no file access here (see ``load.py``). Every model forbids
unknown keys so that a typo in a policy file is an error naming the key path,
never a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

KeystrokeMode = Literal["full", "redacted", "shortcuts", "off"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):([0-5]\d)|24:00)$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capture(_Section):
    """Which streams are recorded and how finely."""

    mouse: bool = Field(True, description="record mouse moves, buttons and scrolls")
    keyboard: bool = Field(True, description="record key events (see keystrokes)")
    window: bool = Field(True, description="record the focused window's title, app and process")
    screenshots: bool = Field(False, description="take screenshots (see [screenshots])")
    mouse_move_hz: float = Field(
        60.0, ge=0, le=1000, description="mouse move sample rate in Hz; 0 records every event"
    )
    keystrokes: KeystrokeMode = Field(
        "redacted",
        description="full: characters (scrubbed); redacted: character classes only; "
        "shortcuts: modified and non-printable keys only; off: no key events",
    )
    queue_size: int = Field(65536, ge=1024, le=4_194_304, description="bounded event queue size")
    elements: bool = Field(
        False,
        description="record the accessible element (role, scrubbed name, bounds, role path) "
        "under each click and each newly focused element; needs the desktop's accessibility "
        "API (docs/privacy.md)",
    )
    unverified_text_apps: tuple[str, ...] = Field(
        (),
        description="keystrokes = full: apps (matched like exclusions.apps) whose typed text is "
        "recorded even where accessibility cannot tell a password field from another field "
        "(a terminal, an app without accessibility); their password prompts are then only "
        "caught by the window-title rule",
    )


class Exclusions(_Section):
    """Windows that are never recorded. Matching is case-insensitive."""

    apps: tuple[str, ...] = Field(
        (), description="denylist: process names, executable paths or bundle ids"
    )
    titles: tuple[str, ...] = Field((), description="denylist: regular expressions on titles")
    allow_apps: tuple[str, ...] = Field(
        (), description="if non-empty, only these apps are recorded"
    )
    allow_titles: tuple[str, ...] = Field(
        (), description="if non-empty, only windows whose title matches one of these are recorded"
    )
    private_browsing: bool = Field(True, description="exclude private/incognito browser windows")
    password_managers: bool = Field(True, description="exclude known password managers")

    @field_validator("titles", "allow_titles")
    @classmethod
    def _regexes_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value


def _default_hours() -> dict[str, tuple[str, ...]]:
    return {day: ("09:00-17:00",) for day in WEEKDAYS[:5]}


class Schedule(_Section):
    """Work hours. Outside them nothing is captured. Disabled = always."""

    enabled: bool = Field(False, description="restrict capture to the hours below")
    timezone: str = Field("UTC", description="IANA time zone name, e.g. Europe/Berlin")
    hours: dict[str, tuple[str, ...]] = Field(
        default_factory=_default_hours,
        description='per weekday (mon..sun) a list of "HH:MM-HH:MM" spans',
    )

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for day, spans in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; expected one of {', '.join(WEEKDAYS)}")
            for span in spans:
                m = _SPAN_RE.match(span)
                if not m or span[:5] >= span[6:]:
                    raise ValueError(f"{day}: {span!r} is not a span like '09:00-17:30'")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class Pause(_Section):
    allowed: bool = Field(True, description="users may pause capture")
    max_minutes: int = Field(60, ge=0, le=24 * 60, description="longest pause; 0 = no limit")
    on_lock: bool = Field(True, description="pause while the screen is locked / session inactive")


class Notice(_Section):
    text: str = Field(
        "This computer records mouse, keyboard and window activity for the purpose your "
        "organisation has told you about. You can pause it at any time and see what was "
        "captured with `deskcorder inspect`.",
        description="shown to the user at first run and when the version changes",
    )
    version: str = Field("1", min_length=1, description="bump to show the notice again")
    require_ack: bool = Field(
        False, description="capture nothing until the user runs `deskcorder consent accept`"
    )


class Identity(_Section):
    mode: Literal["pseudonymous", "named"] = Field(
        "pseudonymous",
        description="pseudonymous: the collector derives user/machine pseudonyms (its key)",
    )
    org_key: SecretStr = Field(
        SecretStr(""),
        description="deprecated and ignored (the collector holds the pseudonym key)",
    )
    org: str = Field("", description="organisation label written into session headers")


class Upload(_Section):
    endpoint: str = Field("", description="collector base URL; empty disables upload")
    enroll_secret: SecretStr = Field(SecretStr(""), description="org enroll secret")
    ca_bundle: str = Field("", description="path to a CA bundle; empty = system store")
    client_cert: str = Field("", description="path to a client certificate (PEM)")
    client_key: str = Field("", description="path to the client certificate's key (PEM)")
    verify_tls: bool = Field(True, description="verify the server certificate (keep on)")
    proxy: str = Field("", description="proxy URL; empty = from the environment")
    timeout_s: float = Field(30.0, gt=0, le=600, description="network timeout per request")
    max_kbps: int = Field(0, ge=0, description="bandwidth cap in KiB/s; 0 = unlimited")
    review: bool = Field(False, description="sealed chunks wait for `deskcorder review` approval")
    backoff_max_s: float = Field(300.0, gt=0, le=86400, description="longest retry delay")
    allow_insecure_http: bool = Field(
        False, description="allow a plain http:// endpoint on a non-loopback host (not for use)"
    )
    on_metered: Literal["wait", "upload"] = Field(
        "wait",
        description="on a metered connection (phone tether, mobile data): wait for an "
        "unmetered one, or upload anyway (max_kbps still applies)",
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_unless_loopback(self) -> Upload:
        if (
            self.endpoint.startswith("http://")
            and not self.allow_insecure_http
            and not _loopback(self.endpoint)
        ):
            raise ValueError(
                f"endpoint {self.endpoint!r} is plain http:// to another host: use https:// "
                "(or set upload.allow_insecure_http = true, which exposes tokens and data)"
            )
        return self


def _loopback(url: str) -> bool:
    """True if the URL's host is this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Spool(_Section):
    quota_mb: int = Field(1024, ge=1, description="largest local spool in MiB")
    on_full: Literal["stop", "drop_oldest"] = Field(
        "stop", description="when the quota is reached: stop capturing, or drop oldest sealed chunk"
    )
    chunk_max_mb: float = Field(8.0, gt=0, le=1024, description="rotate a chunk at this size")
    chunk_max_age_s: int = Field(300, ge=1, le=86400, description="rotate a chunk at this age")
    flush_interval_s: float = Field(
        1.0, gt=0, le=60, description="durable flush interval (at most this much is at risk)"
    )
    retention_days: int = Field(
        30, ge=0, description="delete unsent sealed chunks older than this; 0 = keep forever"
    )
    min_free_mb: int = Field(
        256,
        ge=0,
        le=1_048_576,
        description="pause capture while the spool's disk has less free space than this "
        "(MiB; resumes 10 % above it); 0 = only when writing fails",
    )


class Screenshots(_Section):
    on_click: bool = Field(True, description="before each click")
    on_focus: bool = Field(True, description="on each focus change")
    interval_s: float = Field(0.0, ge=0, description="fixed interval; 0 = off")
    after_typing_s: float = Field(1.5, ge=0, description="after a typing pause; 0 = off")
    min_spacing_s: float = Field(1.0, ge=0, description="minimum time between two screenshots")
    per_hour: int = Field(600, ge=0, description="budget per hour")
    scope: Literal["active_monitor", "all_monitors", "active_window"] = "active_monitor"
    max_width: int = Field(1280, ge=64, le=16384, description="downscale to at most this width")
    format: Literal["webp", "jpeg", "png"] = Field(
        "webp", description="webp or jpeg (lossy, small); png: lossless, several times larger"
    )
    quality: int = Field(70, ge=1, le=100)
    diff_threshold: float = Field(
        0.0, ge=0, le=1, description="skip frames differing by less than this fraction of pixels"
    )
    pre_action: bool = Field(
        False,
        description="keep a small in-memory ring of raw frames while input is active and store "
        "the last frame before each click, drag, scroll, hotkey, key or typing start "
        "(docs/dataset.md)",
    )
    pre_action_hz: float = Field(
        1.0,
        ge=0.5,
        le=30,
        description="ring frames per second while input goes on (plus one when it starts); "
        "each costs about 3-5 ms of CPU at 1920x1080 (docs/performance.md)",
    )
    pre_action_frames: int = Field(
        2, ge=1, le=8, description="raw frames the ring holds (about 8 MB each at 1920x1080)"
    )
    pre_action_per_hour: int = Field(
        3600, ge=0, description="budget of pre-action frames stored per hour"
    )


class Power(_Section):
    """Laptops on battery: fewer screenshots, later uploads (charge in percent)."""

    battery_screenshot_spacing_s: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="on battery: at least this many seconds between screenshots "
        "(0 = as on mains power)",
    )
    screenshots_off_below_percent: int = Field(
        20, ge=0, le=100, description="on battery below this charge: no screenshots (0 = never)"
    )
    uploads_wait_below_percent: int = Field(
        20,
        ge=0,
        le=100,
        description="on battery below this charge: uploads wait for mains power (0 = never)",
    )
    critical_percent: int = Field(
        10,
        ge=0,
        le=100,
        description="on battery at or below this charge: neither screenshots nor uploads",
    )


class Limits(_Section):
    """Self-limits enforced by the agent's watchdog before the service manager acts."""

    cpu_percent: float = Field(10.0, gt=0, le=400, description="sustained CPU ceiling")
    memory_mb: int = Field(200, ge=32, description="resident memory ceiling")


class Policy(_Section):
    """The effective policy."""

    capture: Capture = Field(default_factory=Capture)
    exclusions: Exclusions = Field(default_factory=Exclusions)
    schedule: Schedule = Field(default_factory=Schedule)
    pause: Pause = Field(default_factory=Pause)
    notice: Notice = Field(default_factory=Notice)
    identity: Identity = Field(default_factory=Identity)
    upload: Upload = Field(default_factory=Upload)
    spool: Spool = Field(default_factory=Spool)
    screenshots: Screenshots = Field(default_factory=Screenshots)
    limits: Limits = Field(default_factory=Limits)
    power: Power = Field(default_factory=Power)

    def digest(self) -> str:
        """sha256 of the canonical effective policy (secrets hashed, not included)."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()


def plain(policy: BaseModel) -> dict[str, Any]:
    """The policy as plain data with secrets replaced by ``"**********"`` (or ``""``)."""
    data: dict[str, Any] = policy.model_dump(mode="json")
    return data


def canonical_json(policy: Policy) -> str:
    data = policy.model_dump(mode="python")

    def conv(value: Any) -> Any:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            return "sha256:" + hashlib.sha256(secret.encode()).hexdigest() if secret else ""
        if isinstance(value, dict):
            return {k: conv(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [conv(v) for v in value]
        return value

    return json.dumps(conv(data), sort_keys=True, separators=(",", ":"))
