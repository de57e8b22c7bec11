"""The collector refuses what it must, over real HTTP on loopback, and stays up."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import platform
import socket
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zstandard as zstd

from deskcorder.collector.identities import derive
from deskcorder.collector.validate import LINE_SCANNER
from tests.collector.helpers import (
    DEVICE,
    ENROLL,
    PSEUDONYM_KEY,
    TEST_CLAIMS,
    TEST_KEY,
    USER,
    CollectorProc,
    chunk_header,
    enroll_body,
    key_no,
    write_chunk,
)

SESSION = "20261127T031500Z-1a2b3c4d"


@pytest.fixture(scope="module", params=["local", "fleet"])
def collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CollectorProc]:
    """One collector per backend for the module: local (--data) and fleet (S3 + PostgreSQL)."""
    fleet = None
    if request.param == "fleet":
        from tests.conftest import FleetFactory

        fleet = FleetFactory(
            request.getfixturevalue("seaweedfs"), request.getfixturevalue("postgres")
        )()
    proc = CollectorProc(
        tmp_path_factory.mktemp("collector"),
        None,
        "--max-chunk-mb",
        "4",
        "--max-decompressed-mb",
        "64",
        fleet=fleet,
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def token(collector: CollectorProc) -> str:
    return collector.enroll(TEST_KEY)


LINUX = sys.platform.startswith("linux")


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (Linux; 0 elsewhere, where only the 4xx are checked)."""
    if not LINUX:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def chunk_bytes(
    tmp: Path, session: str = SESSION, seq: int = 0, n: int = 50, **kw: str
) -> tuple[bytes, str]:
    folder = tmp / f"c-{session[:20]}-{seq}-{n}-{len(kw)}"
    manifest = write_chunk(folder, session, seq, [{"k": "kd", "t": i} for i in range(n)], **kw)
    data = (folder / f"{seq:06d}.jsonl.zst").read_bytes()
    return data, manifest.sha256


def put(
    collector: CollectorProc,
    token: str | None,
    data: bytes,
    session: str = SESSION,
    seq: int | str = 0,
    sha: str | None = None,
) -> httpx.Response:
    headers = {"X-Deskcorder-SHA256": sha or hashlib.sha256(data).hexdigest()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.put(
        f"{collector.url}/v1/sessions/{session}/chunks/{seq}",
        content=data,
        headers=headers,
        timeout=30,
    )


ROUTES = [
    ("GET", "/metrics"),
    ("POST", "/v1/enroll"),
    ("PUT", f"/v1/sessions/{SESSION}/chunks/0"),
    ("GET", f"/v1/sessions/{SESSION}/chunks/0"),
    ("HEAD", "/v1/blobs/" + "a" * 64),
    ("PUT", "/v1/blobs/" + "a" * 64),
    ("POST", "/v1/consent"),
    ("GET", "/v1/admin/sessions"),
    ("GET", f"/v1/admin/sessions/{SESSION}"),
    ("GET", f"/v1/admin/sessions/{SESSION}/chunks/0"),
    ("GET", f"/v1/admin/users/{USER}/export"),
    ("DELETE", f"/v1/admin/users/{USER}"),
    ("POST", f"/v1/admin/devices/{DEVICE}/revoke"),
    ("POST", f"/v1/admin/devices/{DEVICE}/readmit"),
    ("GET", "/v1/admin/devices"),
    ("POST", "/v1/admin/people"),
    ("GET", f"/v1/admin/people/p-{'0' * 32}/export"),
    ("DELETE", f"/v1/admin/people/p-{'0' * 32}"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/tokens"),
    ("POST", "/v1/admin/tokens"),
    ("DELETE", "/v1/admin/tokens/someone"),
    ("POST", "/v1/erasure"),  # signed, not a token: an empty body is refused too
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic Zm9vOmJhcg=="])
def test_every_route_needs_a_token(
    collector: CollectorProc, method: str, path: str, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = httpx.request(method, collector.url + path, headers=headers, content=b"{}", timeout=10)
    assert resp.status_code == 401
    if method != "HEAD":
        assert "error" in resp.json()


def test_device_token_is_not_an_admin_token(collector: CollectorProc, token: str) -> None:
    resp = httpx.get(
        collector.url + "/v1/admin/sessions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 401
    assert collector.admin("GET", "/healthz").status_code == 200


def test_enroll_refuses_bad_secret_and_bad_body(collector: CollectorProc) -> None:
    url = collector.url + "/v1/enroll"
    good = {"Authorization": f"Bearer {ENROLL}"}
    bad = {"Authorization": "Bearer x"}
    key = key_no(9)
    body = enroll_body(collector.url, key)
    assert httpx.post(url, json=body, headers=bad).status_code == 401
    assert httpx.post(url, content=b"not json", headers=good).status_code == 400
    assert httpx.post(url, json={"device": "../etc"}, headers=good).status_code == 400
    assert httpx.post(url, json={**body, "public_key": "AAAA"}, headers=good).status_code == 400
    assert httpx.post(url, content=b"{" * 70000, headers=good).status_code == 413
    # a signature by another key, or over other claims, or an unknown challenge
    forged = {**body, "signature": key_no(8).sign("enroll", body["challenge"], TEST_CLAIMS)}
    assert httpx.post(url, json=forged, headers=good).json()["code"] == "bad_signature"
    swapped = {**body, "claims": {**TEST_CLAIMS, "login": "someone-else"}}
    assert httpx.post(url, json=swapped, headers=good).json()["code"] == "bad_signature"
    stale = {**body, "challenge": "1." + "0" * 32 + "." + "0" * 32}
    assert httpx.post(url, json=stale, headers=good).json()["code"] == "bad_challenge"
    named = enroll_body(collector.url, key, {**TEST_CLAIMS, "mode": "named", "hostname": "h"})
    refused = httpx.post(url, json=named, headers=good)
    assert refused.status_code == 403 and refused.json()["code"] == "named_refused"
    first = httpx.post(url, json=body, headers=good)
    assert first.status_code == 201 and first.json()["device"] == key.device
    assert first.json()["user"].startswith("u-") and first.json()["machine"].startswith("m-")
    replay = httpx.post(url, json=body, headers=good)  # the same signed challenge again
    assert replay.status_code == 401 and replay.json()["code"] == "challenge_used"


def test_put_is_idempotent_by_digest(collector: CollectorProc, token: str, tmp_path: Path) -> None:
    session = "20261127T031500Z-00000001"
    data, sha = chunk_bytes(tmp_path, session)
    first = put(collector, token, data, session)
    assert first.status_code == 201 and first.json()["sha256"] == sha
    again = put(collector, token, data, session)
    assert again.status_code == 200 and again.json() == {**first.json(), "created": False}
    other, _ = chunk_bytes(tmp_path, session, n=51)
    conflict = put(collector, token, other, session)
    assert conflict.status_code == 409 and "another digest" in conflict.json()["error"]
    got = httpx.get(
        f"{collector.url}/v1/sessions/{session}/chunks/0",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert got.status_code == 200 and got.json()["sha256"] == sha


def test_device_a_cannot_touch_device_b(
    collector: CollectorProc, token: str, tmp_path: Path
) -> None:
    session = "20261127T031500Z-00000002"
    data, _ = chunk_bytes(tmp_path, session)
    assert put(collector, token, data, session).status_code == 201
    other = collector.enroll(key_no(2))
    # write into A's session (even with a chunk that claims B's device)
    data_b, _ = chunk_bytes(tmp_path, session, seq=1, device=key_no(2).device)
    assert put(collector, other, data_b, session, 1).status_code == 403
    # a chunk whose header names A, sent with B's token, in B's own new session
    forged, _ = chunk_bytes(tmp_path, "20261127T031500Z-00000003")
    refused = put(collector, other, forged, "20261127T031500Z-00000003")
    assert refused.status_code == 403 and "another device" in refused.json()["error"]
    # read A's chunk metadata with B's token
    read = httpx.get(
        f"{collector.url}/v1/sessions/{session}/chunks/0",
        headers={"Authorization": f"Bearer {other}"},
    )
    assert read.status_code == 404
    # blobs are per device: B cannot learn that A holds a blob
    blob = b"a screenshot of device A"
    sha = hashlib.sha256(blob).hexdigest()
    url = f"{collector.url}/v1/blobs/{sha}"
    mine = {"Authorization": f"Bearer {token}"}
    assert httpx.put(url, content=blob, headers=mine).status_code == 201
    assert httpx.head(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert httpx.head(url, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    stored = collector.records(session)
    assert list(stored) == [0]


def test_header_must_match_the_url(collector: CollectorProc, token: str, tmp_path: Path) -> None:
    data, _ = chunk_bytes(tmp_path, "20261127T031500Z-00000004")
    wrong_session = put(collector, token, data, "20261127T031500Z-00000005")
    assert wrong_session.status_code == 422 and "names session" in wrong_session.json()["error"]
    wrong_seq = put(collector, token, data, "20261127T031500Z-00000004", 3)
    assert wrong_seq.status_code == 422 and "names seq" in wrong_seq.json()["error"]


@pytest.mark.parametrize(
    ("session", "seq"),
    [
        ("..", "0"),
        ("%2E%2E", "0"),
        ("..%2F..%2Fetc", "0"),
        ("a%2Fb", "0"),
        ("a%00b", "0"),
        ("a.b", "0"),
        ("x" * 65, "0"),
        (SESSION, "-1"),
        (SESSION, "1234567"),
        (SESSION, "1e3"),
        (SESSION, "%00"),
    ],
)
def test_bad_ids_are_refused(
    collector: CollectorProc, token: str, tmp_path: Path, session: str, seq: str
) -> None:
    data, _ = chunk_bytes(tmp_path)
    resp = put(collector, token, data, session, seq)
    assert 400 <= resp.status_code < 500
    if collector.fleet is not None:  # nothing but chunks/ and blobs/ under the prefix
        assert all(k.split("/")[0] in ("chunks", "blobs") for k in collector.fleet.object_keys())
        assert not [k for k in collector.fleet.object_keys() if ".." in k or "%" in k]
        return
    assert not (collector.data.parent / "etc").exists()
    assert sorted(p.name for p in collector.data.iterdir()) == [
        "blobs",
        "chunks",
        *(x for x in ("index.sqlite3", "index.sqlite3-shm", "index.sqlite3-wal")),
        "tmp",
    ]


@pytest.mark.parametrize("sha", ["A" * 64, "a" * 63, "..", "a" * 64 + "%00", "g" * 64])
def test_bad_blob_ids_are_refused(collector: CollectorProc, token: str, sha: str) -> None:
    resp = httpx.put(
        f"{collector.url}/v1/blobs/{sha}",
        content=b"x",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert 400 <= resp.status_code < 500


def _bomb(lines: bool, size: int) -> bytes:
    out = io.BytesIO()
    cobj = zstd.ZstdCompressor(level=1, write_checksum=True).compressobj()
    piece = (b'{"k":"kd","t":1}\n' * 60000) if lines else b"a" * 1_000_000
    header = chunk_header(SESSION, 0)
    out.write(cobj.compress(json.dumps(header).encode() + b"\n"))
    written = 0
    while written < size:
        out.write(cobj.compress(piece))
        written += len(piece)
    out.write(cobj.flush())
    return out.getvalue()


def test_bad_bodies_get_4xx_and_the_server_stays_small(
    collector: CollectorProc, token: str, tmp_path: Path
) -> None:
    assert collector.proc is not None
    pid = collector.proc.pid
    before = rss_kib(pid)
    bomb = _bomb(lines=True, size=200 * 1024 * 1024)  # 200 MiB of valid lines, > 64 MiB bound
    assert len(bomb) < 4 * 1024 * 1024
    long_line = _bomb(lines=False, size=50 * 1024 * 1024)  # one 50 MiB line
    cases: list[tuple[bytes, int, str]] = [
        (bomb, 422, "decompressed size exceeds"),
        (long_line, 422, "longer than"),
        (b"not zstd at all", 422, "not zstd"),
        (b"", 422, "empty body"),
        (zstd.ZstdCompressor().compress(b"hello\n"), 422, "not JSON"),
        (zstd.ZstdCompressor().compress(b'{"format":"other"}\n'), 422, "not a deskcorder chunk"),
        (zstd.ZstdCompressor().compress(b"[1]\n"), 422, "not a JSON object"),
        # nested deeper than the JSON parser recurses: was a 500
        (zstd.ZstdCompressor().compress(b"[" * 200_000 + b"\n"), 422, "not JSON"),
        (
            zstd.ZstdCompressor().compress(
                json.dumps(chunk_header(SESSION, 0)).encode()
                + b'\n{"k":"shot","x":'
                + b"[" * 200_000
                + b"}\n"
            ),
            422,
            "screenshot record is not valid JSON",
        ),
        (
            zstd.ZstdCompressor().compress(
                json.dumps(chunk_header(SESSION, 0)).encode() + b'\n{"k":"kd"}\n[2]\n'
            ),
            422,
            "record 2 is not a JSON object",
        ),
    ]
    good, _ = chunk_bytes(tmp_path)
    cases.append((good[:-7], 422, "truncated"))
    for body, status, words in cases:
        resp = put(collector, token, body, "20261127T031500Z-00000006")
        assert resp.status_code == status, (words, resp.text)
        assert words in resp.json()["error"]
    mismatch = put(collector, token, good, "20261127T031500Z-00000006", sha="0" * 64)
    assert mismatch.status_code == 400 and "does not match" in mismatch.json()["error"]
    no_digest = httpx.put(
        f"{collector.url}/v1/sessions/{SESSION}/chunks/0",
        content=good,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert no_digest.status_code == 400
    too_big = put(collector, token, b"\0" * (5 * 1024 * 1024))
    assert too_big.status_code == 413

    def stream() -> Iterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(80):
            yield b"\0" * 65536

    chunked = httpx.put(
        f"{collector.url}/v1/sessions/{SESSION}/chunks/0",
        content=stream(),
        headers={"Authorization": f"Bearer {token}", "X-Deskcorder-SHA256": "0" * 64},
    )
    assert chunked.status_code == 413
    after = rss_kib(pid)
    assert after - before < 60 * 1024, (before, after)
    assert collector.healthy()
    if collector.fleet is None:
        assert not list((collector.data / "tmp").iterdir())


def test_revoked_device_stays_out_until_readmitted(
    collector: CollectorProc, tmp_path: Path
) -> None:
    key = key_no(4)
    claims = {**TEST_CLAIMS, "login": "revoked-login"}
    device = key.device
    old = collector.enroll(key, claims)
    session = "20261127T031500Z-00000007"
    data, _ = chunk_bytes(tmp_path, session, device=device, user=None)
    assert put(collector, old, data, session).status_code == 201
    assert collector.admin("POST", f"/v1/admin/devices/{device}/revoke").status_code == 200
    assert collector.admin("POST", "/v1/admin/devices/d-nobody/revoke").status_code == 404
    data1, _ = chunk_bytes(tmp_path, session, seq=1, device=device, user=None)
    refused = put(collector, old, data1, session, 1)
    # its token is gone (401); a fleet instance trusts a token look-up for up to 1 s, and then
    # the commit refuses the revoked device (403 device_revoked): out either way
    assert refused.status_code == 401 or (
        collector.fleet is not None and refused.json().get("code") == "device_revoked"
    ), refused.text
    secret = {"Authorization": f"Bearer {ENROLL}"}
    # the device's own key, a token request, and a new key for the same user and machine
    again = httpx.post(
        f"{collector.url}/v1/enroll", json=enroll_body(collector.url, key, claims), headers=secret
    )
    assert again.status_code == 403 and again.json()["code"] == "device_revoked"
    challenge = httpx.post(f"{collector.url}/v1/auth/challenge", json={}).json()["challenge"]
    signed = {"device": device, "challenge": challenge, "signature": key.sign("token", challenge)}
    token = httpx.post(f"{collector.url}/v1/auth/token", json=signed)
    assert token.status_code == 403 and token.json()["code"] == "device_revoked"
    fresh = httpx.post(
        f"{collector.url}/v1/enroll",
        json=enroll_body(collector.url, key_no(5), claims),
        headers=secret,
    )
    assert fresh.status_code == 403 and fresh.json()["code"] == "device_revoked"
    # readmitted: the device's key gets a token again
    assert collector.admin("POST", f"/v1/admin/devices/{device}/readmit").status_code == 200
    challenge = httpx.post(f"{collector.url}/v1/auth/challenge", json={}).json()["challenge"]
    signed = {"device": device, "challenge": challenge, "signature": key.sign("token", challenge)}
    new = httpx.post(f"{collector.url}/v1/auth/token", json=signed).json()["token"]
    assert put(collector, new, data1, session, 1).status_code == 201
    actions = [
        (e["actor"], e["action"], e["target"])
        for e in collector.admin("GET", "/v1/admin/audit").json()["entries"]
    ]
    assert ("admin:root", "revoke", device) in actions
    assert ("admin:root", "readmit", device) in actions


def test_consent_export_and_erase(collector: CollectorProc, tmp_path: Path) -> None:
    key, claims = key_no(3), {**TEST_CLAIMS, "login": "erase-me"}
    token = collector.enroll(key, claims)
    user = derive(PSEUDONYM_KEY.encode(), "erase-me", TEST_CLAIMS["machine_id"]).user
    url = f"{collector.url}/v1/consent"
    auth = {"Authorization": f"Bearer {token}"}
    receipt = {"user": user, "notice_version": "3", "accepted": True, "at": "2026-11-27T03:00:00Z"}
    made = httpx.post(url, json=receipt, headers=auth)
    assert made.status_code == 201 and made.json()["id"] > 0
    assert httpx.post(url, json={"user": user}, headers=auth).status_code == 400
    other = {**receipt, "user": "u-someone-else"}  # a receipt names this device's user or none
    assert httpx.post(url, json=other, headers=auth).status_code == 422
    again = httpx.post(url, json=receipt, headers=auth)  # the same receipt: not duplicated
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    bad_action = {**receipt, "accepted": None, "action": "maybe"}
    assert httpx.post(url, json=bad_action, headers=auth).status_code == 400
    assert httpx.post(url, json=[1], headers=auth).status_code == 400
    deep = httpx.post(url, content=b"[" * 60_000, headers=auth)  # past the parser's recursion
    assert deep.status_code == 400 and deep.json()["error"] == "body is not JSON"
    session = "20261127T031500Z-00000008"
    blob = b"erase this screenshot"
    sha = hashlib.sha256(blob).hexdigest()
    stored = httpx.put(f"{collector.url}/v1/blobs/{sha}", content=blob, headers=auth)
    assert stored.status_code == 201
    folder = tmp_path / "with-shot"
    write_chunk(
        folder, session, 0, [*({"k": "kd", "t": i} for i in range(50)), {"k": "shot", "t": 60,
        "sha256": sha}], device=key.device, user=user,
    )  # fmt: skip
    data = (folder / "000000.jsonl.zst").read_bytes()
    assert put(collector, token, data, session).status_code == 201
    listed = collector.admin("GET", f"/v1/admin/sessions?user={user}").json()["sessions"]
    assert [s["session"] for s in listed] == [session]
    export = collector.admin("GET", f"/v1/admin/users/{user}/export")
    assert export.status_code == 200
    lines = export.text.splitlines()
    assert '"accepted": true' in lines[0] and session in lines[1]
    assert sum('"k":"kd"' in line for line in lines) == 50
    (shot,) = [json.loads(line)["blob"] for line in lines if line.startswith('{"blob"')]
    assert shot["sha256"] == sha and base64.b64decode(shot["base64"]) == blob
    erased = collector.admin("DELETE", f"/v1/admin/users/{user}")
    assert erased.json()["erased"] == {"sessions": 1, "chunks": 1, "blobs": 1, "receipts": 1}
    assert collector.admin("GET", f"/v1/admin/sessions/{session}").status_code == 404
    if collector.fleet is None:
        assert not (collector.data / "chunks" / session).exists()
    else:
        assert collector.fleet.object_keys(f"chunks/{session}/") == []
    assert collector.admin("GET", f"/v1/admin/users/{user}/export").text == ""
    assert collector.admin("GET", "/v1/admin/users/..%2F/export").status_code in (400, 404)


def test_metrics_count_requests(collector: CollectorProc) -> None:
    resp = collector.admin("GET", "/metrics")
    assert resp.status_code == 200
    assert "deskcorder_collector_requests_total" in resp.text
    assert 'route="chunk_put",status="201"' in resp.text
    assert "deskcorder_collector_chunks " in resp.text
    assert f'deskcorder_collector_info{{line_scanner="{LINE_SCANNER}"}} 1' in resp.text


def test_a_client_gone_mid_body_stores_nothing_and_its_retry_is_stored(
    collector: CollectorProc, token: str, tmp_path: Path
) -> None:
    session = "20261127T031500Z-0000000d"
    data, sha = chunk_bytes(tmp_path, session)
    head = (
        f"PUT /v1/sessions/{session}/chunks/0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nX-Deskcorder-SHA256: {sha}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", collector.port)) as sock:
        sock.sendall(head + data[: len(data) // 2])
    assert collector.healthy()
    got = httpx.get(
        f"{collector.url}/v1/sessions/{session}/chunks/0",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert got.status_code == 404
    assert put(collector, token, data, session).status_code == 201  # the retry is stored


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(
    not LINUX or platform.libc_ver()[0] != "glibc", reason="glibc malloc settings, /proc"
)
def test_big_chunks_do_not_fault_their_buffers_in_again_on_every_put(
    collector: CollectorProc, token: str
) -> None:
    """Freed buffers are reused (server.keep_freed_memory): a chunk of ~600 KB of lines
    costs a handful of page faults, not the ~290 of fresh mmaps each PUT."""
    assert collector.proc is not None
    session = "20261127T031500Z-0000000f"
    lines = b"".join(
        b'{"k":"mv","t":%d,"x":%d,"y":%d}\n' % (i * 8000, i % 1920, i % 1080) for i in range(20_000)
    )
    assert len(lines) > 550_000

    def put_seq(seq: int) -> None:
        head = json.dumps(chunk_header(session, seq)).encode() + b"\n"
        body = zstd.ZstdCompressor(level=3, write_checksum=True).compress(head + lines)
        assert put(collector, token, body, session, seq).status_code == 201

    faults = []
    for seq in range(20):
        before = minor_faults(collector.proc.pid)
        put_seq(seq)
        faults.append(minor_faults(collector.proc.pid) - before)
    # the median: each pipeline thread has its own malloc arena to warm up once
    assert statistics.median(faults) < 50, faults
