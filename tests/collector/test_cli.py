"""`deskcorder collector serve` error paths: one line, documented exit code."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.collector.helpers import ADMIN
from tests.conftest import Cli


def one_line_error(stderr: str, words: str) -> None:
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("deskcorder: error: ") and words in stderr, stderr


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--admin-token-file", "/nonexistent/admin"], 2, "cannot read the admin token"),
        (["--enroll-secret-file", "SHORT"], 2, "at least 16 characters"),
        (["--port", "70000"], 2, "is not a TCP port"),
        (["--max-chunk-mb", "0"], 2, "must be positive"),
        (["--port", "abc"], 2, "invalid int value"),
    ],
)
def test_bad_input(cli: Cli, tmp_path: Path, args: list[str], code: int, words: str) -> None:
    (tmp_path / "SHORT").write_text("short\n")
    args = [str(tmp_path / a) if a == "SHORT" else a for a in args]
    done = cli.run("collector", "serve", "--data", str(tmp_path / "d"), *args)
    assert done.returncode == code
    one_line_error(done.stderr, words)


def test_missing_data_option(cli: Cli) -> None:
    done = cli.run("collector", "serve")
    assert done.returncode == 2
    one_line_error(done.stderr, "--data")


def test_port_in_use(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "admin").write_text(ADMIN)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = cli.run("collector", "serve", "--data", str(tmp_path / "d"), "--port", str(port))
    assert done.returncode == 1
    one_line_error(done.stderr, f"cannot listen on 127.0.0.1:{port}")


def test_unwritable_data_folder(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = cli.run("collector", "serve", "--data", str(blocker / "d"), "--port", "0")
    assert done.returncode == 1
    one_line_error(done.stderr, "cannot create folder")


def test_help(cli: Cli) -> None:
    done = cli.run("collector", "serve", "--help")
    assert done.returncode == 0 and "--enroll-secret-file" in done.stdout


def test_listening_socket_is_tcp_so_replies_are_not_delayed_by_nagle() -> None:
    from deskcorder.collector.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
    finally:
        sock.close()


def test_keep_alive_replies_are_fast(tmp_path: Path) -> None:
    import statistics
    import time

    import httpx

    from tests.collector.helpers import CollectorProc

    proc = CollectorProc(tmp_path).start()
    try:
        with httpx.Client(base_url=proc.url) as client:
            times = []
            for _ in range(10):
                start = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                times.append(time.perf_counter() - start)
    finally:
        proc.stop()
    # with Nagle on the server side each reply on a reused connection took ~40 ms
    assert statistics.median(times[1:]) < 0.03, times
