"""The Debian package, for real: build, install, use, purge. Slow (about a minute).

It installs into this machine's / (as root) and always purges again, checking
that nothing is left: other tests assume no machine policy in /etc/deskcorder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging/linux/build-deb.sh"

pytestmark = pytest.mark.slow


def _require_tools() -> None:
    tools = ("dpkg", "dpkg-deb", "systemd-analyze", "/usr/bin/python3")
    missing = [t for t in tools if shutil.which(t) is None]
    reason = None
    if missing:
        reason = f"missing {', '.join(missing)}"
    elif os.geteuid() != 0:
        reason = "installing a .deb needs root"
    elif subprocess.run(
        ["/usr/bin/python3", "-c", "import ensurepip, venv"], capture_output=True, check=False
    ).returncode:
        reason = "Debian's python3 lacks venv/ensurepip (python3-venv)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the .deb test cannot run: {reason}")
        pytest.skip(reason)


def run(
    *argv: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd="/",
    )


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_tools()
    if run("dpkg-query", "-W", "deskcorder").returncode == 0:
        pytest.fail("a deskcorder package is already installed here; purge it first")
    out = tmp_path_factory.mktemp("deb")
    done = run("bash", str(BUILD), str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("deskcorder_*.deb")
    return path


def package_paths(deb: Path) -> list[Path]:
    tar = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = []
    for line in tar.splitlines():
        name = line.split(None, 5)[5].split(" -> ")[0]
        paths.append(Path(name.removeprefix(".")))
    return paths


@pytest.fixture
def installed(deb: Path, tmp_path: Path) -> Iterator[Path]:
    done = run("dpkg", "-i", str(deb))
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "nothing records yet" in done.stdout
        yield deb
    finally:
        purge = run("dpkg", "--purge", "deskcorder")
        assert purge.returncode == 0, purge.stdout + purge.stderr


def test_deb_installs_works_and_purges_without_a_trace(installed: Path, tmp_path: Path) -> None:
    deb = installed
    files = package_paths(deb)
    assert Path("/opt/deskcorder/bin/deskcorder") in files
    # what the package put where
    assert os.readlink("/usr/bin/deskcorder") == "/opt/deskcorder/bin/deskcorder"
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "deskcorder").stdout
    assert "/etc/deskcorder/policy.toml" in conffiles
    pins = Path("/usr/share/doc/deskcorder/python-packages.txt").read_text().splitlines()
    assert any(re.fullmatch(r"pydantic==[\d.]+", line) for line in pins), pins
    unit = Path("/usr/lib/systemd/user/deskcorder.service").read_text()
    assert "ExecStart=/usr/bin/deskcorder run" in unit
    assert not re.search("@[A-Z_]+@", unit)
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    verify = run(
        "systemd-analyze",
        "--user",
        "verify",
        "/usr/lib/systemd/user/deskcorder.service",
        env={"XDG_RUNTIME_DIR": str(runtime)},
    )
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    # postinst starts nothing: the unit is installed but enabled for no one
    assert not Path("/etc/systemd/user/graphical-session.target.wants/deskcorder.service").exists()
    assert not Path("/etc/xdg/autostart/deskcorder.desktop").exists()
    # the installed command works from its own environment
    env: dict[str, str] = {"HOME": str(tmp_path), "DESKCORDER_RUNTIME_DIR": str(tmp_path / "rt")}
    version = run("/usr/bin/deskcorder", "--version", env=env)
    assert version.returncode == 0 and version.stdout.strip() == "deskcorder 0.1.0"
    # accessibility: Debian's PyGObject, a dependency, is linked into the environment
    depends = run("dpkg-query", "-W", "-f=${Depends}", "deskcorder").stdout
    assert "python3-gi" in depends and "gir1.2-atspi-2.0" in depends, depends
    atspi = "import gi; gi.require_version('Atspi', '2.0'); from gi.repository import Atspi"
    gi = run("/opt/deskcorder/bin/python", "-c", atspi, env=env)
    assert gi.returncode == 0, gi.stderr
    check = run("/usr/bin/deskcorder", "policy", "check", env=env)
    assert check.returncode == 0, check.stderr
    assert "files: /etc/deskcorder/policy.toml" in check.stdout
    doctor = run(
        "/usr/bin/deskcorder",
        "doctor",
        "--backend",
        "fake",
        "--spool",
        str(tmp_path / "s"),
        env=env,
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "[ok  ] policy: valid (/etc/deskcorder/policy.toml)" in doctor.stdout
    # enabling for all users, then removing the package, undoes the enabling too
    enable = run("/usr/bin/deskcorder", "service", "install", "--all-users", env=env)
    assert enable.returncode == 0, enable.stderr
    assert "kept      /usr/lib/systemd/user/deskcorder.service" in enable.stdout
    assert Path("/etc/xdg/autostart/deskcorder.desktop").exists()
    assert Path("/etc/systemd/user/graphical-session.target.wants/deskcorder.service").is_symlink()
    purge = run("dpkg", "--purge", "deskcorder")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    left = [p for p in files if (p.exists() or p.is_symlink()) and not p.is_dir()]
    assert left == []
    for path in (
        "/etc/deskcorder",
        "/opt/deskcorder",
        "/etc/xdg/autostart/deskcorder.desktop",
        "/etc/systemd/user/graphical-session.target.wants/deskcorder.service",
    ):
        assert not os.path.lexists(path), path
    assert run("dpkg-query", "-W", "deskcorder").returncode != 0
