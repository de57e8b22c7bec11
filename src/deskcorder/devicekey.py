"""The agent's identity key and the signed-challenge protocol (shared by agent and collector).

Each agent identity (one OS user on one machine) holds an Ed25519 key pair in
its state folder (``<spool>/state/identity-key.pem``, mode 0600). Its device
id is derived from the public key, so nobody can claim another agent's id::

    device = "d-" + sha256("deskcorder-device-v1:" + raw public key)[:32 hex]

The agent proves that it holds the key by signing a challenge the collector
issued (docs/security.md)::

    deskcorder-auth-v1\\n<purpose>\\n<device>\\n<challenge>\\n<sha256 of the claims or "">

``purpose`` is ``enroll``, ``token`` or ``erase``; an enrollment's signature covers its
claims (login, machine id, mode), so they cannot be swapped in transit.
Nothing here imports the agent or the collector; both import this.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from deskcorder.errors import DeskcorderError

log = logging.getLogger(__name__)

KEY_FILE = "identity-key.pem"
PROTOCOL = "deskcorder-auth-v1"
PURPOSES = ("enroll", "token", "erase")


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding (as in JWS)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: object) -> bytes:
    """The inverse of :func:`b64encode`; ValueError on anything else."""
    if not isinstance(text, str) or len(text) > 256:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def device_id(public_key: bytes) -> str:
    """The device id of a raw 32-byte Ed25519 public key."""
    digest = hashlib.sha256(b"deskcorder-device-v1:" + public_key).hexdigest()
    return f"d-{digest[:32]}"


def claims_digest(claims: dict[str, Any] | None) -> str:
    """sha256 of the canonical JSON of an enrollment's claims ("" for none)."""
    if not claims:
        return ""
    text = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def signed_message(
    purpose: str, device: str, challenge: str, claims: dict[str, Any] | None = None
) -> bytes:
    """The exact bytes an agent signs (and the collector verifies)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    return f"{PROTOCOL}\n{purpose}\n{device}\n{challenge}\n{claims_digest(claims)}".encode()


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class DeviceKey:
    """An agent's Ed25519 key pair."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.device = device_id(self.public)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceKey:
        """A key from 32 bytes (tests and benchmarks: a fixed device id)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, purpose: str, challenge: str, claims: dict[str, Any] | None = None) -> str:
        """base64url signature of :func:`signed_message` for this device."""
        return b64encode(
            self._private.sign(signed_message(purpose, self.device, challenge, claims))
        )

    def pem(self) -> bytes:
        return self._private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def save(self, path: Path) -> None:
        """Write the private key, readable by its owner only (0600), complete or not at all.

        Never replaces an existing key (FileExistsError): two processes
        starting at once keep the one that was written first.
        """
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.pem())
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)  # fails if a key is there: a key is never overwritten
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        try:
            private = load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise DeskcorderError(f"{path}: cannot read the identity key: {exc.strerror}") from exc
        except (ValueError, TypeError) as exc:
            raise DeskcorderError(f"{path}: not an unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise DeskcorderError(f"{path}: the identity key is not an Ed25519 key")
        return cls(private)


_UNSAVED: dict[Path, DeviceKey] = {}  # keys made while their folder could not be written


def load_or_create(state_dir: Path) -> DeviceKey:
    """This agent's key (``<state>/identity-key.pem``), created at first start.

    A key file readable by others is refused (someone could have copied it):
    the error names the file; deleting it gives this agent a new device id.
    When the key cannot be written (a full or read-only disk at the first
    start), the new key is kept in memory for this process, which goes on
    (it writes nothing else either until there is space), and every later
    call tries to save that same key again; ``saved`` tells whether it is on disk.
    """
    path = Path(state_dir) / KEY_FILE
    if not path.exists():
        key = _UNSAVED.get(path) or DeviceKey.generate()
        try:
            key.save(path)
        except FileExistsError:  # another process made it at the same instant
            _UNSAVED.pop(path, None)
        except OSError as exc:
            _UNSAVED[path] = key
            log.warning("%s: cannot write the identity key yet: %s", path, exc.strerror)
            return key
        else:
            _UNSAVED.pop(path, None)
            return key
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise DeskcorderError(
            f"{path}: the identity key is readable by other users and may have been "
            "copied; delete it (this agent then enrolls as a new device)"
        )
    return DeviceKey.load(path)


def saved(state_dir: Path) -> bool:
    """False while this process holds a key it could not write yet."""
    return Path(state_dir) / KEY_FILE not in _UNSAVED
