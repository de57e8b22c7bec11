"""Who the data is about: pseudonymous by default, named only when policy says.

Pseudonyms are ``HMAC-SHA256(identity.org_key, "<kind>:<stable id>")``,
truncated to 128 bits and prefixed with the kind's initial (``u-``/``d-``):

* device: the OS machine id (``/etc/machine-id``; the host name where none exists);
* user: machine id + login name (so the same login on two machines is two users
  unless the organisation links them itself).

Without the org key nobody (including the collector operator, if the key is
kept by the organisation) can recompute a pseudonym from a name; with it the
organisation can answer a data-subject request by computing the pseudonyms
of a given user. ``named`` mode writes the login and host names instead.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import socket
from dataclasses import dataclass
from pathlib import Path

from deskcorder.policy.model import Identity


def pseudonym(kind: str, value: str, key: str) -> str:
    """HMAC-SHA256 of a stable identifier under the org key (``u-``/``d-`` + 32 hex)."""
    mac = hmac.new(key.encode(), f"{kind}:{value}".encode(), hashlib.sha256)
    return f"{kind[0]}-{mac.hexdigest()[:32]}"


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


@dataclass(frozen=True)
class Identities:
    mode: str
    user: str
    device: str


def identities(cfg: Identity) -> Identities:
    """The user and device identifiers written into session headers and receipts."""
    if cfg.mode == "named":
        return Identities("named", login_name(), socket.gethostname())
    key = cfg.org_key.get_secret_value()
    mid = machine_id()
    return Identities(
        "pseudonymous",
        pseudonym("user", f"{mid}:{login_name()}", key),
        pseudonym("device", mid, key),
    )
