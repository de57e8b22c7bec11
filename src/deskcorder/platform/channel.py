"""The control channel's transport: a local endpoint only the same user can reach.

POSIX (Linux, macOS): a Unix socket ``<runtime dir>/control.sock``
(``platform/unix_socket.py``); the runtime folder is created with mode 0700
and must be owned by the user, and the socket is chmod 0600. Windows: a named
pipe through ``multiprocessing.connection`` with an auth key in a file only
the user can read (``platform/windows/pipe.py``).

Either way the transport carries one request line and one reply line
(bytes); what they mean is ``deskcorder.control``'s business.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from deskcorder.errors import DeskcorderError
from deskcorder.platform.base import ChannelServer, Endpoint


def runtime_dir() -> Path:
    """Per-user runtime folder for the lock and the control socket (mode 0700)."""
    override = os.environ.get("DESKCORDER_RUNTIME_DIR")
    if override:
        path = Path(override)
    else:
        import platformdirs

        base = Path(platformdirs.user_runtime_dir("deskcorder", appauthor=False))
        if sys.platform.startswith("linux") and not base.parent.is_dir():
            uid = os.getuid()
            base = Path(tempfile.gettempdir()) / f"deskcorder-{uid}"
        path = base
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        st = path.stat()
        if st.st_uid != os.getuid():
            raise DeskcorderError(f"{path}: runtime folder is owned by another user; refusing")
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def endpoint(server: ChannelServer) -> Endpoint:
    """This OS's endpoint for the running agent (nothing is opened before ``start``)."""
    if sys.platform == "win32":
        from deskcorder.platform.windows.pipe import PipeEndpoint

        return PipeEndpoint(runtime_dir(), server)
    from deskcorder.platform.unix_socket import UnixSocketEndpoint

    return UnixSocketEndpoint(runtime_dir() / "control.sock", server)


def call(message: bytes, timeout: float) -> bytes:
    """Send one request line to the running agent; its reply line (raises AgentNotRunning)."""
    if sys.platform == "win32":
        from deskcorder.platform.windows import pipe

        return pipe.call(runtime_dir(), message, timeout)
    from deskcorder.platform import unix_socket

    return unix_socket.call(runtime_dir() / "control.sock", message, timeout)
