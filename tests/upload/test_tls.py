"""TLS: the collector serves HTTPS itself; the uploader trusts only its CA; plain http refused.

A certificate authority is made here (cryptography's x509), with a server
certificate for 127.0.0.1 signed by it, and a second, unrelated CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deskcorder.policy.model import Upload
from deskcorder.upload import Uploader, pending_chunks
from tests.collector.helpers import (
    ENROLL,
    TEST_CLAIMS,
    CollectorProc,
    all_ns,
    install_key,
    make_spool,
    wait_until,
)
from tests.conftest import Cli


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True,
    content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, encipher_only=False, decipher_only=False,
)  # fmt: skip


def make_ca(folder: Path, cn: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(
    folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("collector.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = make_ca(folder, "test-ca")
    other, _, _ = make_ca(folder, "other-ca")
    cert, key = make_server_cert(folder, ca_key, ca_cert)
    return {"ca": ca, "other": other, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def collector(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[CollectorProc]:
    proc = CollectorProc(
        tmp_path_factory.mktemp("tls"),
        None,
        "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
    )  # fmt: skip
    proc.verify = ssl.create_default_context(cafile=str(pki["ca"]))
    proc.start()
    yield proc
    proc.stop()


def uploader(spool: Path, url: str, **cfg: Any) -> Uploader:
    install_key(spool)
    settings = {"endpoint": url, "enroll_secret": ENROLL, "backoff_max_s": 0.2, "timeout_s": 2.0}
    up = Uploader(Upload(**{**settings, **cfg}), spool, claims=TEST_CLAIMS, backoff_base=0.05)
    up.start()
    return up


def test_uploads_over_https_to_the_collector_signed_by_the_policy_ca(
    collector: CollectorProc, pki: dict[str, Path], tmp_path: Path
) -> None:
    assert collector.url.startswith("https://")
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=3, per_chunk=20, blobs=True)
    up = uploader(spool, collector.url, ca_bundle=str(pki["ca"]))
    try:
        wait_until(lambda: not pending_chunks(spool), 30, "the spool to drain over https")
    finally:
        up.stop(5)
    assert sorted(all_ns(collector)) == sorted(expected)
    assert up.status()["last_error"] is None


def test_a_collector_certificate_from_another_ca_is_refused_and_nothing_is_lost(
    collector: CollectorProc, pki: dict[str, Path], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    make_spool(spool, sessions=1, chunks=2, per_chunk=5)
    before = collector.admin("GET", "/metrics").text
    up = uploader(spool, collector.url, ca_bundle=str(pki["other"]))
    try:
        wait_until(
            lambda: "CERTIFICATE_VERIFY_FAILED" in str(up.status()["last_error"]),
            20,
            "a certificate verification error",
        )
    finally:
        up.stop(5)
    assert len(pending_chunks(spool)) == 2  # kept, retried later
    assert not (spool / "state" / "upload-token.json").exists()
    after = collector.admin("GET", "/metrics").text
    enrolled = [line for line in after.splitlines() if 'route="enroll"' in line]
    assert enrolled == [line for line in before.splitlines() if 'route="enroll"' in line]


def test_plain_http_to_another_host_is_refused_by_policy(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[upload]\nendpoint = "http://collector.example.org"\n')
    done = cli.run("policy", "check", "--policy", str(policy))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "upload.allow_insecure_http" in line and "http://collector.example.org" in line
    policy.write_text(
        '[upload]\nendpoint = "http://collector.example.org"\nallow_insecure_http = true\n'
    )
    assert cli.run("policy", "check", "--policy", str(policy)).returncode == 0
    for loopback in ("http://127.0.0.1:8787", "http://localhost:8787", "http://[::1]:8787"):
        policy.write_text(f'[upload]\nendpoint = "{loopback}"\n')
        assert cli.run("policy", "check", "--policy", str(policy)).returncode == 0, loopback


def test_collector_refuses_unusable_tls_files(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    for args in (["--tls-cert", str(bad), "--tls-key", str(bad)], ["--tls-cert", str(bad)]):
        done = cli.run("collector", "serve", "--data", str(tmp_path / "d"), "--port", "0", *args)
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert "--tls-" in line
