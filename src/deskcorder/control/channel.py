"""A same-user-only request/reply channel between the CLI and the running agent.

Messages are one JSON object per line (never pickle): ``{"cmd": "status"}``
in, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}`` out. The
transport (a Unix socket with mode 0600, or a named pipe on Windows) is the
platform's: ``deskcorder.platform.channel``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from deskcorder.errors import AgentNotRunning, DeskcorderError
from deskcorder.platform.base import Endpoint
from deskcorder.platform.channel import call as _call
from deskcorder.platform.channel import endpoint, runtime_dir

__all__ = ["ControlServer", "Handler", "request", "runtime_dir"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves requests on its own named thread; each request is handled by ``handlers[cmd]``."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self._endpoint: Endpoint | None = None

    def start(self) -> None:
        self._endpoint = endpoint(self)
        self._endpoint.start()

    def stop(self, timeout: float) -> None:
        if self._endpoint is not None:
            self._endpoint.stop(timeout)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        handler = self.handlers.get(str(cmd))
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        try:
            reply = handler(request)
        except (ValueError, PermissionError, DeskcorderError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control handler %s failed", cmd)
            return {"ok": False, "error": f"internal error: {exc}"}
        return {"ok": True, **reply}

    # -- platform.channel.Server -------------------------------------------------------
    def serve(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request is not a JSON object")
        except ValueError as exc:
            return self.refuse(str(exc))
        return json.dumps(self.handle(request), default=str).encode()

    def refuse(self, reason: str) -> bytes:
        return json.dumps({"ok": False, "error": f"bad request: {reason}"}).encode()


def request(cmd: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """Send one request to the running agent and return its reply (raises AgentNotRunning)."""
    data = _call(json.dumps({"cmd": cmd, **fields}).encode(), timeout)
    try:
        result = json.loads(data)
    except ValueError as exc:
        raise AgentNotRunning("the agent sent an unreadable reply") from exc
    if not isinstance(result, dict):
        raise AgentNotRunning("the agent sent an unreadable reply")
    return result
