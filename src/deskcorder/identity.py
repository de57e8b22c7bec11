"""Who the data is about, as this agent knows it: its device id and its pseudonyms.

* **device**: derived from this agent's own key (``deskcorder.devicekey``), one
  per OS user per machine, created at first start in ``<spool>/state/``.
* **user / machine**: in ``pseudonymous`` mode (the default) the collector
  derives them under a key only it holds, from the login name and machine id
  this agent sends once, at enrollment; it returns them and they are kept in
  ``<spool>/state/identity.json`` (for chunk headers, receipts and
  ``inspect``). Until the first enrollment they are unknown (``null`` in the
  header); the collector stores every chunk under the pseudonyms it gave the
  device, never a header's claim. In ``named`` mode (chosen explicitly by
  policy) they are the login and host names.

No pseudonym key is on the workstation: ``identity.org_key`` is accepted for
old policies, ignored, and warned about (docs/security.md).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskcorder.devicekey import DeviceKey, claims_digest, load_or_create
from deskcorder.policy.model import Identity

log = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
IDENTITY_FORMAT = "deskcorder-identity"
ORG_KEY_DEPRECATED = (
    "identity.org_key is deprecated and ignored: pseudonyms are derived by the collector "
    "(docs/security.md); remove it from the policy, and give its value to the collector as "
    "--pseudonym-key-file to keep the pseudonyms it produced"
)


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
            if value:
                return value
        except OSError:
            continue
    return socket.gethostname()


def login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in the environment or passwd entry
        return "unknown"


def claims(cfg: Identity) -> dict[str, str]:
    """What this agent tells the collector once, at enrollment (over TLS)."""
    out = {"mode": cfg.mode, "login": login_name(), "machine_id": machine_id()}
    if cfg.mode == "named":
        out["hostname"] = socket.gethostname()
    return out


def warn_deprecated(cfg: Identity) -> None:
    if cfg.org_key.get_secret_value():
        log.warning(ORG_KEY_DEPRECATED)


@dataclass(frozen=True)
class Identities:
    mode: str
    user: str | None
    device: str
    machine: str | None = None


def state_dir(spool_root: Path) -> Path:
    return Path(spool_root) / "state"


def device_key(spool_root: Path) -> DeviceKey:
    """This agent's key (created at first start, mode 0600)."""
    return load_or_create(state_dir(spool_root))


def enrolled(spool_root: Path) -> dict[str, Any]:
    """What the collector last said this device is (``{}`` before the first enrollment)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((state_dir(spool_root) / IDENTITY_FILE).read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("format") == IDENTITY_FORMAT:
            return data
    return {}


def save_enrolled(
    spool_root: Path, *, endpoint: str, device: str, reply: dict[str, Any], sent: dict[str, str]
) -> dict[str, Any]:
    """Keep the collector's answer to an enrollment (or a token: it repeats the pseudonyms)."""
    from deskcorder.storage.chunk import atomic_write

    body = {
        "format": IDENTITY_FORMAT,
        "format_version": 1,
        "endpoint": endpoint,
        "device": device,
        "mode": reply.get("mode"),
        "user": reply.get("user"),
        "machine": reply.get("machine"),
        "claims_sha256": claims_digest(sent),
    }
    folder = state_dir(spool_root)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(folder / IDENTITY_FILE, json.dumps(body).encode())
    return body


def identities(cfg: Identity, spool_root: Path, device: str | None = None) -> Identities:
    """The device id and the user/machine identifiers for headers and receipts.

    ``device``: this agent's device id when already known (saves reading the key).
    """
    device = device or device_key(spool_root).device
    if cfg.mode == "named":
        return Identities("named", login_name(), device, socket.gethostname())
    known = enrolled(spool_root)
    if known.get("device") != device or known.get("mode") != "pseudonymous":
        return Identities("pseudonymous", None, device, None)
    return Identities("pseudonymous", known.get("user"), device, known.get("machine"))
