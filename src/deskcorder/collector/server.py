"""``deskcorder collector serve``: run the collector on uvicorn."""

from __future__ import annotations

import ctypes
import logging
import platform
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from deskcorder.errors import DeskcorderError, UsageError

from .validate import LINE_SCANNER

if TYPE_CHECKING:
    from .app import Security
    from .store import Store

log = logging.getLogger(__name__)


def read_secret(path: Path | None, what: str) -> str | None:
    """The first line of ``path`` (stripped); a one-line error if unusable."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: the {what} is not UTF-8 text") from exc
    if len(text) < 16:
        raise UsageError(f"{path}: the {what} must be at least 16 characters")
    return text


_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
KEEP_FREED_BYTES = 64 << 20


def keep_freed_memory() -> bool:
    """Let glibc reuse freed buffers instead of handing them back to the kernel at once.

    Each chunk PUT allocates and frees buffers about as large as the chunk's
    decompressed lines: the decoder's reads (up to 1 MiB) and the blocks of
    lines they are joined into. Above glibc's default thresholds each was a fresh
    ``mmap``, so every PUT page-faulted and zeroed them again: ~290 page
    faults and ~0.8 ms of kernel time per 64 KB chunk of real agent records,
    a third of the collector's CPU (docs/performance.md). With these settings
    allocations up to 32 MiB come from malloc's arenas, and up to 64 MiB of
    free memory per arena is kept for the next PUT; memory stays bounded by
    the peak working set. True if applied (Linux with glibc), else False.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio enables TCP_NODELAY on accepted sockets
    # only then; without it every keep-alive reply waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DeskcorderError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    return sock


def tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """``--tls-cert``/``--tls-key`` checked now (a one-line error, not a traceback later)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except OSError as exc:
        raise UsageError(f"--tls-cert/--tls-key: cannot read: {exc.strerror or exc}") from exc
    except ssl.SSLError as exc:
        raise UsageError(
            f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its key ({exc})"
        ) from exc
    return str(cert), str(key)


def serve(
    open_store: Callable[[], Store],
    host: str,
    port: int,
    *,
    admin_token: str | None,
    enroll_secret: str | None,
    access_log: bool = False,
    security: Security | None = None,
    tls: tuple[str, str] | None = None,
    trusted_proxies: str | None = None,
    shutdown_timeout: float = 30.0,
    retain_days: float | None = None,
) -> int:
    """Serve the collector on ``open_store()``'s store (a backend's) until SIGTERM/SIGINT.

    On SIGTERM it stops accepting connections and answers every request it
    has already begun, for up to ``shutdown_timeout`` seconds (a chunk PUT
    whose body is still arriving included), then finishes what the PUT
    pipeline holds and exits 0.
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise DeskcorderError(
            "the collector needs the [collector] extra: pip install 'deskcorder[collector]'"
        ) from exc
    from .app import Security, create_app

    if port < 0 or port > 65535:
        raise UsageError(f"--port {port} is not a TCP port")
    if not keep_freed_memory():
        log.info("allocator left at its defaults (not Linux with glibc)")
    if LINE_SCANNER != "c":
        log.warning(
            "the C line scanner (deskcorder.collector._linescan) is not built: chunks are "
            "checked in Python, which is slower; reinstall deskcorder with a C compiler present"
        )
    security = security or Security()
    store = open_store()
    try:
        app = create_app(
            store, admin_token=admin_token, enroll_secret=enroll_secret, security=security
        )
        sock = bind(host, port)
        if enroll_secret is None:
            log.warning("no --enroll-secret-file: devices cannot enroll")
        if admin_token is None:
            log.warning("no --admin-token-file: only named admin tokens open admin routes")
        if security.pseudonym_key is None:
            log.warning("no --pseudonym-key-file: pseudonymous agents cannot enroll")
        if tls is None and host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "serving plain HTTP on %s: use --tls-cert/--tls-key or a TLS reverse proxy", host
            )
        bound = sock.getsockname()[1]
        scheme = "https" if tls else "http"
        print(
            f"collector listening on {scheme}://{host}:{bound} ({store.objects.describe()})",
            flush=True,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
            h11_max_incomplete_event_size=64 * 1024,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
            # client addresses (rate limits) from X-Forwarded-For only when sent by these
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=trusted_proxies or None,
        )
        server = uvicorn.Server(config)
        retention = Retention(store, retain_days) if retain_days else None
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the
        # handler it found: this one turns it into a clean exit (the store closed, status 0)
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            server.run(sockets=[sock])
        except _Stopped:
            log.info("stopped by SIGTERM after finishing the requests in progress")
        finally:
            signal.signal(signal.SIGTERM, previous)
            if retention is not None:
                retention.stop()
    finally:
        store.close()
    return 0


class Retention:
    """``--retain-days``: deletes what is older, at start and then every ``interval`` seconds.

    Every instance runs one; the fleet index lets one instance at a time do
    the work (the others skip that round). Each deletion is in the audit log.
    """

    def __init__(self, store: Store, days: float, interval: float = 3600.0) -> None:
        self.store = store
        self.days = days
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.store.expire(self.days)
            except Exception as exc:  # the next round tries again; serving goes on
                log.error("retention: %s", exc)
            else:
                if done and done["sessions"]:
                    log.info("retention: deleted %s", done)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class _Stopped(Exception):
    """SIGTERM arrived and uvicorn has finished the requests in progress."""


def _stopped(sig: int, frame: object) -> None:
    raise _Stopped
