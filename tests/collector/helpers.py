"""Shared by the collector and upload tests: a real collector process, chunks, admin reads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deskcorder.collector.identities import derive
from deskcorder.devicekey import KEY_FILE, DeviceKey, b64encode
from deskcorder.events import FORMAT_NAME, FORMAT_VERSION
from deskcorder.storage.chunk import ChunkWriter, Manifest, iter_lines
from tests.services import FleetTarget
from tests.xserver import wait_for

ADMIN = "admin-token-0123456789abcdef"
ENROLL = "enroll-secret-0123456789abcdef"
PSEUDONYM_KEY = "pseudonym-key-0123456789abcdef"
TEST_CLAIMS = {"mode": "pseudonymous", "login": "test-login", "machine_id": "test-machine-id"}
TEST_KEY = DeviceKey.from_seed(b"\x01" * 32)
DEVICE = TEST_KEY.device
USER = derive(PSEUDONYM_KEY.encode(), "test-login", "test-machine-id").user
MACHINE = derive(PSEUDONYM_KEY.encode(), "test-login", "test-machine-id").machine


def key_no(n: int) -> DeviceKey:
    """The ``n``-th fixed test key (1 is DEVICE's)."""
    return DeviceKey.from_seed(bytes([n]) * 32)


def register(store: Any, key: DeviceKey = TEST_KEY, login: str = TEST_CLAIMS["login"]) -> str:
    """Enroll ``key`` straight into a ``Store`` (what /v1/enroll does once it verified the
    signature) with the test claims' pseudonyms (or ``login``'s); returns a device token."""
    from deskcorder.collector.base import Enrollment

    ids = derive(PSEUDONYM_KEY.encode(), login, TEST_CLAIMS["machine_id"])
    enrollment = Enrollment(
        key.device, b64encode(key.public), "pseudonymous", ids.user, ids.machine, ids.person,
        "test", 1,
    )  # fmt: skip
    return str(store.enroll(enrollment, 3600.0))


def install_key(spool: Path, key: DeviceKey = TEST_KEY) -> None:
    """Give a spool this key (what the agent makes at its first start), unless it has one."""
    if not (spool / "state" / KEY_FILE).exists():
        key.save(spool / "state" / KEY_FILE)


def enroll_body(url: str, key: DeviceKey, claims: dict[str, str] | None = None) -> dict[str, Any]:
    """A signed enrollment body for ``key`` (a fresh challenge from the collector at ``url``)."""
    claims = claims or TEST_CLAIMS
    challenge = httpx.post(url + "/v1/auth/challenge", json={}, timeout=10).json()["challenge"]
    return {
        "public_key": b64encode(key.public),
        "challenge": challenge,
        "signature": key.sign("enroll", challenge, claims),
        "claims": claims,
    }


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """The shared condition wait (tests/xserver.py), typed for these helpers."""
    return wait_for(cond, timeout, what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CollectorProc:
    """``deskcorder collector serve`` as a real subprocess on a loopback port."""

    def __init__(
        self, root: Path, port: int | None = None, *extra: str, fleet: FleetTarget | None = None
    ) -> None:
        self.root = root
        self.data = root / "collector-data"
        self.port = port or free_port()
        self.extra = extra
        self.fleet = fleet  # the fleet backend (bucket + database) instead of --data
        (root / "admin").write_text(ADMIN + "\n")
        (root / "enroll").write_text(ENROLL + "\n")
        (root / "pseudonym-key").write_text(PSEUDONYM_KEY + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        # with --tls-cert: https, verified against ``self.verify`` (set it to the test CA)
        self.verify: Any = True
        scheme = "https" if "--tls-cert" in extra else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> CollectorProc:
        self.spawn()
        try:
            wait_until(self.healthy, 20, "the collector to answer /healthz")
        except BaseException:
            self.kill()
            raise
        return self

    def spawn(self) -> None:
        """Start the process (``start`` also waits until it answers)."""
        where = ["--data", str(self.data)] if self.fleet is None else self.fleet.args()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deskcorder",
                "collector",
                "serve",
                *where,
                "--port",
                str(self.port),
                "--admin-token-file",
                str(self.root / "admin"),
                "--enroll-secret-file",
                str(self.root / "enroll"),
                "--pseudonym-key-file",
                str(self.root / "pseudonym-key"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(self.fleet.env if self.fleet else {})},
        )

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            assert self.proc.stderr is not None
            raise AssertionError(f"collector exited: {self.proc.stderr.read().decode()}")
        try:
            resp = httpx.get(self.url + "/healthz", timeout=1, verify=self.verify)
            return resp.status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    # -- client helpers --------------------------------------------------------------
    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}", **kw.pop("headers", {})}
        return httpx.request(
            method, self.url + path, headers=headers, timeout=10, verify=self.verify, **kw
        )

    def enroll(self, key: DeviceKey = TEST_KEY, claims: dict[str, str] | None = None) -> str:
        """Enroll ``key`` as a real agent does (signed challenge); its device token."""
        resp = httpx.post(
            self.url + "/v1/enroll",
            json=enroll_body(self.url, key, claims),
            headers={"Authorization": f"Bearer {ENROLL}"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["token"])

    def records(self, session: str) -> dict[int, list[dict[str, Any]]]:
        """Every stored chunk of ``session``: seq -> records (header excluded)."""
        info = self.admin("GET", f"/v1/admin/sessions/{session}")
        if info.status_code == 404:
            return {}
        assert info.status_code == 200, info.text
        out: dict[int, list[dict[str, Any]]] = {}
        for chunk in info.json()["chunk_list"]:
            body = self.admin("GET", f"/v1/admin/sessions/{session}/chunks/{chunk['seq']}")
            assert body.status_code == 200
            assert hashlib.sha256(body.content).hexdigest() == chunk["sha256"]
            lines = [json.loads(x) for x in iter_lines(io.BytesIO(body.content))]
            assert lines[0]["session"] == session and lines[0]["seq"] == chunk["seq"]
            out[chunk["seq"]] = lines[1:]
        return out

    def chunk_count(self) -> int:
        resp = self.admin("GET", "/v1/admin/sessions")
        assert resp.status_code == 200, resp.text
        return sum(int(s["chunks"]) for s in resp.json()["sessions"])


def chunk_header(
    session: str, seq: int, device: str = DEVICE, user: str | None = USER
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "session": session,
        "seq": seq,
        "device": device,
        "user": user,
        "agent": "test-agent 1.0",
    }


def write_chunk(
    folder: Path,
    session: str,
    seq: int,
    records: list[dict[str, Any]],
    *,
    device: str = DEVICE,
    user: str | None = USER,
) -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    writer = ChunkWriter(folder, session, seq, chunk_header(session, seq, device, user), level=3)
    writer.write_many(records)
    return writer.seal()


def make_spool(
    spool: Path,
    sessions: int,
    chunks: int,
    per_chunk: int,
    *,
    blobs: bool = False,
    pad: int = 0,
) -> list[int]:
    """Sealed chunks in the spool layout; every record has a unique ``n``. Returns all n."""
    ns: list[int] = []
    n = 0
    for s in range(sessions):
        session = f"20261127T0{s:05d}Z-0000abcd"
        for seq in range(chunks):
            records: list[dict[str, Any]] = []
            for _ in range(per_chunk):
                rec: dict[str, Any] = {"k": "kd", "t": n, "n": n}
                if pad:
                    rec["pad"] = os.urandom(pad // 2).hex()
                records.append(rec)
                ns.append(n)
                n += 1
            if blobs:
                data = f"screenshot {s} {seq}".encode() + os.urandom(64)
                sha = hashlib.sha256(data).hexdigest()
                (spool / "blobs" / sha[:2]).mkdir(parents=True, exist_ok=True)
                (spool / "blobs" / sha[:2] / sha).write_bytes(data)
                records.append({"k": "shot", "t": n, "sha256": sha})
            write_chunk(spool / "sessions" / session, session, seq, records)
    return ns


def all_ns(collector: CollectorProc) -> list[int]:
    resp = collector.admin("GET", "/v1/admin/sessions")
    out: list[int] = []
    for info in resp.json()["sessions"]:
        for _seq, records in sorted(collector.records(info["session"]).items()):
            out.extend(r["n"] for r in records if "n" in r)
    return out


def metrics_text(collector: CollectorProc) -> str:
    """The collector's /metrics; for a fleet cluster, its instances' counters added up."""
    metrics = getattr(collector, "metrics", None)
    if callable(metrics):
        return str(metrics())
    return collector.admin("GET", "/metrics").text
