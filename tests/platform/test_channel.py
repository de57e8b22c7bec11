"""The control channel's transports and the single-instance lock, on real sockets and files.

The Windows named pipe runs its real accept loop over ``multiprocessing.connection``
with the pipe swapped for a Unix socket address (the only OS call it makes).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from deskcorder.agent import InstanceLock
from deskcorder.control import ControlServer, request
from deskcorder.errors import AgentNotRunning, AlreadyRunning
from deskcorder.platform import unix_socket
from deskcorder.platform.base import MAX_MESSAGE
from deskcorder.platform.windows import pipe


def handlers() -> dict[str, Any]:
    def echo(req: dict[str, Any]) -> dict[str, Any]:
        if req.get("refuse"):
            raise PermissionError("not now")
        return {"echo": req.get("x")}

    return {"echo": echo}


def test_unix_socket_is_private_and_answers_each_line(_runtime_dir: Path) -> None:
    server = ControlServer(handlers())
    server.start()
    try:
        path = _runtime_dir / "control.sock"
        assert (path.stat().st_mode & 0o777) == 0o600
        assert request("echo", x=3) == {"ok": True, "echo": 3}
        assert request("echo", refuse=True) == {"ok": False, "error": "not now"}
        assert request("nope")["error"] == "unknown command 'nope'"
        for raw, error in ((b"[1]\n", "not a JSON object"), (b"{oops\n", "bad request")):
            reply = json.loads(unix_socket.call(path, raw.strip(), 5))
            assert reply["ok"] is False and error in reply["error"]
        with socket.socket(socket.AF_UNIX) as sock:  # more than a message may be: refused
            sock.connect(str(path))
            sock.sendall(b"x" * (MAX_MESSAGE + 10))
            reply = json.loads(unix_socket.recv_line(sock))
        assert reply == {"ok": False, "error": "bad request: message too large"}
    finally:
        server.stop(2)
    assert not path.exists()
    with pytest.raises(AgentNotRunning, match="no running deskcorder agent"):
        request("echo")


def test_windows_pipe_endpoint_serves_until_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiprocessing.connection import Client, Listener

    address = str(tmp_path / "pipe.sock")
    monkeypatch.setattr(pipe, "pipe_address", lambda: address)
    monkeypatch.setattr(pipe, "_listener", lambda a, key: Listener(a, "AF_UNIX", authkey=key))
    monkeypatch.setattr(pipe, "_client", lambda a, key: Client(a, "AF_UNIX", authkey=key))
    endpoint = pipe.PipeEndpoint(tmp_path, ControlServer(handlers()))
    endpoint.start()
    try:
        key = (tmp_path / "control.key").read_bytes()
        assert len(key) == 32
        reply = pipe.call(tmp_path, json.dumps({"cmd": "echo", "x": "hi"}).encode(), 5)
        assert json.loads(reply) == {"ok": True, "echo": "hi"}
        assert json.loads(pipe.call(tmp_path, b"{oops", 5))["ok"] is False
        (tmp_path / "control.key").write_bytes(os.urandom(32))  # another key: refused
        with pytest.raises(AgentNotRunning, match="cannot talk to the agent"):
            pipe.call(tmp_path, b'{"cmd": "echo"}', 5)
    finally:
        endpoint.stop(2)
    assert endpoint._thread is not None and not endpoint._thread.is_alive()
    with pytest.raises(AgentNotRunning):
        pipe.call(tmp_path, b'{"cmd": "echo"}', 5)


def test_instance_lock_names_the_holder_and_frees_on_release(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    second = InstanceLock(tmp_path)
    with pytest.raises(
        AlreadyRunning, match=rf"already running for this user \(pid {os.getpid()}\)"
    ):
        second.acquire()
    assert AlreadyRunning("x").exit_code == 4
    first.release()
    assert not (tmp_path / "agent.pid").exists()
    second.acquire()  # free again
    second.release()
