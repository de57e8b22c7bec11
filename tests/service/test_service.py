"""`deskcorder service`: rendered templates, install/uninstall round trips, error paths."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from deskcorder.errors import DeskcorderError, EnvironmentUnsupported
from deskcorder.service import Target, install, status, uninstall
from deskcorder.service import linux as svc_linux
from deskcorder.service import macos as svc_macos
from deskcorder.service import windows as svc_windows
from deskcorder.service.base import MARKER, fill
from deskcorder.service.command import ceilings
from tests.conftest import Cli

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "src" / "deskcorder" / "data"
TEMPLATES = {
    "linux/deskcorder.service": "deskcorder.service",
    "linux/deskcorder.desktop": "deskcorder.desktop",
    "macos/com.deskcorder.agent.plist": "com.deskcorder.agent.plist",
    "windows/deskcorder-task.xml": "deskcorder-task.xml",
}
EXE = str(Path(sys.executable).parent / "deskcorder")
TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def target(tmp_path: Path, scope: str = "user", platform: str = "linux", **kw: object) -> Target:
    kw.setdefault("user", "alice")
    return Target(
        scope=scope,  # type: ignore[arg-type]
        exec_path=EXE,
        platform=platform,
        root=tmp_path,
        home=PurePosixPath("/home/alice"),
        **kw,  # type: ignore[arg-type]
    )


def files_under(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()
    )


@pytest.mark.parametrize(("src", "data"), TEMPLATES.items())
def test_packaging_templates_and_package_data_are_identical(src: str, data: str) -> None:
    assert (REPO / "packaging" / src).read_bytes() == (DATA / data).read_bytes(), (
        f"packaging/{src} and src/deskcorder/data/{data} differ: copy one over the other"
    )


def test_fill_rejects_unfilled_placeholders() -> None:
    with pytest.raises(DeskcorderError, match="unfilled placeholders: @NOPE@"):
        fill("ExecStart=@EXEC@ @NOPE@", {"EXEC": "x"})


# -- Linux ------------------------------------------------------------------------------


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: install the Debian package systemd")
        pytest.skip("systemd-analyze not installed")
    return tool


@pytest.mark.parametrize("scope", ["user", "all-users"])
def test_rendered_unit_passes_systemd_analyze_verify_without_warnings(
    tmp_path: Path, scope: str
) -> None:
    tool = _systemd_analyze()
    unit = tmp_path / "units" / "deskcorder.service"
    unit.parent.mkdir()
    unit.write_text(svc_linux.render_unit(target(tmp_path, scope)))
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    done = _verify(tool, unit, runtime, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout == ""


def _verify(tool: str, unit: Path, runtime: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze --user verify UNIT`` with its own XDG_RUNTIME_DIR."""
    return subprocess.run(
        [tool, "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        cwd=cwd,
        check=False,
    )


def test_systemd_analyze_catches_a_bad_unit(tmp_path: Path) -> None:
    """The verify test above can fail: a key systemd 252 does not know is reported."""
    tool = _systemd_analyze()
    unit = tmp_path / "deskcorder.service"
    unit.write_text(svc_linux.render_unit(target(tmp_path)) + "\n[Service]\nRestartSteps=3\n")
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    done = _verify(tool, unit, runtime, tmp_path)
    assert "RestartSteps" in done.stderr


def test_unit_is_bound_to_the_graphical_session_and_limited(tmp_path: Path) -> None:
    text = svc_linux.render_unit(target(tmp_path, cpu_quota_percent=30, memory_max_mb=512))
    lines = set(text.splitlines())
    assert text.startswith(f"# {MARKER};")
    for line in (
        "PartOf=graphical-session.target",
        "After=graphical-session.target",
        "WantedBy=graphical-session.target",
        "Restart=on-failure",
        "RestartSec=5",
        "RestartPreventExitStatus=2 3 4",
        "CPUQuota=30%",
        "MemoryMax=512M",
        "StandardError=journal",
        f"ExecStart={EXE} run",
    ):
        assert line in lines, line


def test_exec_path_with_spaces_is_quoted(tmp_path: Path) -> None:
    t = Target("user", "/opt/my apps/deskcorder", root=tmp_path, home=PurePosixPath("/h"))
    assert 'ExecStart="/opt/my apps/deskcorder" run' in svc_linux.render_unit(t)
    assert 'Exec="/opt/my apps/deskcorder" run' in svc_linux.render_desktop(t)


def test_desktop_entry_is_skipped_where_systemd_runs_autostart(tmp_path: Path) -> None:
    text = svc_linux.render_desktop(target(tmp_path))
    assert "X-systemd-skip=true" in text.splitlines()
    assert f"Exec={EXE} run" in text.splitlines()
    assert "[Desktop Entry]" in text.splitlines()
    tool = shutil.which("desktop-file-validate")
    if tool:
        path = tmp_path / "deskcorder.desktop"
        path.write_text(text)
        done = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_linux_user_install_uninstall_round_trip(tmp_path: Path) -> None:
    t = target(tmp_path)
    rows = install(t)
    home = tmp_path / "home/alice"
    unit = home / ".config/systemd/user/deskcorder.service"
    link = home / ".config/systemd/user/graphical-session.target.wants/deskcorder.service"
    desktop = home / ".config/autostart/deskcorder.desktop"
    assert [r.verb for r in rows[:3]] == ["wrote", "linked", "wrote"]
    assert rows[0].subject == str(unit) and rows[2].subject == str(desktop)
    assert os.readlink(link) == "/home/alice/.config/systemd/user/deskcorder.service"
    assert unit.read_text() == svc_linux.render_unit(t)
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert [r.verb for r in status(t)][:3] == ["present"] * 3
    assert [r.verb for r in install(t)[:3]] == ["unchanged"] * 3
    removed = uninstall(t)
    assert [r.subject for r in removed if r.verb == "removed"] == [
        str(unit),
        str(link),
        str(link.parent),  # the .wants folder it created, now empty
        str(desktop),
    ]
    assert files_under(tmp_path) == []
    assert not link.parent.exists()
    assert [r.verb for r in status(t)][:3] == ["missing"] * 3
    assert uninstall(t)[1].verb == "nothing"


def test_linux_all_users_uses_vendor_locations(tmp_path: Path) -> None:
    t = target(tmp_path, "all-users")
    install(t)
    assert files_under(tmp_path) == [
        "etc/systemd/user/graphical-session.target.wants/deskcorder.service",
        "etc/xdg/autostart/deskcorder.desktop",
        "usr/lib/systemd/user/deskcorder.service",
    ]
    link = tmp_path / "etc/systemd/user/graphical-session.target.wants/deskcorder.service"
    assert os.readlink(link) == "/usr/lib/systemd/user/deskcorder.service"
    uninstall(t)
    assert files_under(tmp_path) == []


def test_files_not_written_by_deskcorder_are_never_overwritten_or_removed(tmp_path: Path) -> None:
    t = target(tmp_path, "all-users")
    unit = tmp_path / "usr/lib/systemd/user/deskcorder.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/deskcorder run\n")  # e.g. from the .deb
    rows = install(t)
    assert rows[0].verb == "kept"
    assert unit.read_text().startswith("[Service]")
    assert status(t)[0].verb == "foreign"
    rows = uninstall(t)
    assert any(r.verb == "kept" and r.subject == str(unit) for r in rows)
    assert unit.exists()


def test_outdated_file_is_reported_and_rewritten(tmp_path: Path) -> None:
    t = target(tmp_path)
    install(t)
    unit = tmp_path / "home/alice/.config/systemd/user/deskcorder.service"
    unit.write_text(unit.read_text().replace("RestartSec=5", "RestartSec=1"))
    assert status(t)[0].verb == "outdated"
    assert install(t)[0].verb == "wrote"
    assert status(t)[0].verb == "present"


def test_write_failure_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "usr").write_text("a file where a folder must be")
    with pytest.raises(DeskcorderError, match=r"^cannot write .*deskcorder.service: .*") as err:
        install(target(tmp_path, "all-users"))
    assert "\n" not in str(err.value)
    assert "administrator" in str(err.value)


def test_unknown_platform_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentUnsupported, match="no login service support"):
        install(target(tmp_path, platform="sunos5"))


def test_live_linux_user_install_reloads_systemd_and_tolerates_no_user_bus(
    tmp_path: Path,
) -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 1, "", "Failed to connect to bus\n")

    rows = install(target(tmp_path, run=runner))
    assert calls == [["systemctl", "--user", "daemon-reload"]]
    assert [(r.verb, r.note) for r in rows if r.subject.startswith("systemctl")] == [
        ("skipped", "Failed to connect to bus")
    ]
    uninstall(target(tmp_path, run=runner))
    assert calls[1:] == [
        ["systemctl", "--user", "stop", "deskcorder.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]


# -- macOS ------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["user", "all-users"])
def test_launch_agent_plist_parses_and_has_required_keys(tmp_path: Path, scope: str) -> None:
    body = svc_macos.render_plist(target(tmp_path, scope, "darwin"))
    assert MARKER.encode() in body[:512]
    data = plistlib.loads(body)
    assert data["Label"] == "com.deskcorder.agent"
    assert data["ProgramArguments"] == [EXE, "run"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert isinstance(data["ThrottleInterval"], int) and data["ThrottleInterval"] >= 10
    assert data["LimitLoadToSessionType"] == "Aqua"
    if scope == "user":
        assert data["StandardErrorPath"] == "/home/alice/Library/Logs/deskcorder/agent.log"
    else:
        assert "StandardErrorPath" not in data  # no per-user path for every user


def test_macos_round_trip_paths(tmp_path: Path) -> None:
    for scope, rel in (
        ("user", "home/alice/Library/LaunchAgents/com.deskcorder.agent.plist"),
        ("all-users", "Library/LaunchAgents/com.deskcorder.agent.plist"),
    ):
        t = target(tmp_path, scope, "darwin")
        assert install(t)[0].subject == str(tmp_path / rel)
        assert files_under(tmp_path) == [rel]
        uninstall(t)
        assert files_under(tmp_path) == []


# -- Windows ----------------------------------------------------------------------------


def _task(body: bytes) -> ET.Element:
    assert body.startswith(b"\xff\xfe"), "schtasks wants UTF-16 with a byte order mark"
    text = body.decode("utf-16")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>')
    return ET.fromstring(text.split("?>", 1)[1])


def test_task_xml_for_one_user(tmp_path: Path) -> None:
    root = _task(svc_windows.render_task(target(tmp_path, "user", "win32", user=r"CORP\alice")))
    assert root.tag == f"{TASK_NS}Task" and root.get("version") == "1.2"
    assert {child.tag.removeprefix(TASK_NS) for child in root} >= {
        "RegistrationInfo",
        "Triggers",
        "Principals",
        "Settings",
        "Actions",
    }
    trigger = root.find(f"{TASK_NS}Triggers/{TASK_NS}LogonTrigger")
    assert trigger is not None
    assert trigger.findtext(f"{TASK_NS}UserId") == r"CORP\alice"
    principal = root.find(f"{TASK_NS}Principals/{TASK_NS}Principal")
    assert principal is not None
    assert principal.findtext(f"{TASK_NS}UserId") == r"CORP\alice"
    assert principal.findtext(f"{TASK_NS}LogonType") == "InteractiveToken"
    assert principal.findtext(f"{TASK_NS}RunLevel") == "LeastPrivilege"
    settings = root.find(f"{TASK_NS}Settings")
    assert settings is not None
    assert settings.findtext(f"{TASK_NS}Hidden") == "false"
    assert settings.findtext(f"{TASK_NS}MultipleInstancesPolicy") == "IgnoreNew"
    assert settings.findtext(f"{TASK_NS}ExecutionTimeLimit") == "PT0S"
    assert settings.findtext(f"{TASK_NS}RestartOnFailure/{TASK_NS}Count") == "5"
    exe = root.find(f"{TASK_NS}Actions/{TASK_NS}Exec")
    assert exe is not None
    assert exe.findtext(f"{TASK_NS}Command") == EXE
    assert exe.findtext(f"{TASK_NS}Arguments") == "run"
    assert root.findtext(f"{TASK_NS}RegistrationInfo/{TASK_NS}URI") == (
        r"\deskcorder\deskcorder-CORP_alice"
    )


def test_task_xml_for_all_users_runs_as_the_logged_on_member_of_users(tmp_path: Path) -> None:
    root = _task(svc_windows.render_task(target(tmp_path, "all-users", "win32")))
    trigger = root.find(f"{TASK_NS}Triggers/{TASK_NS}LogonTrigger")
    assert trigger is not None and trigger.find(f"{TASK_NS}UserId") is None
    principal = root.find(f"{TASK_NS}Principals/{TASK_NS}Principal")
    assert principal is not None
    assert [c.tag.removeprefix(TASK_NS) for c in principal] == ["GroupId", "RunLevel"]
    assert principal.findtext(f"{TASK_NS}GroupId") == "S-1-5-32-545"


def test_windows_install_registers_and_uninstall_deletes_the_task(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def schtasks(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "SUCCESS\n", "")

    t = target(tmp_path, "all-users", "win32", run=schtasks)
    rows = install(t)
    xml = tmp_path / "ProgramData/deskcorder/deskcorder-task.xml"
    assert rows[0].verb == "wrote" and rows[0].subject == str(xml)
    name = r"\deskcorder\deskcorder-all-users"
    assert calls == [["schtasks", "/Create", "/XML", str(xml), "/TN", name, "/F"]]
    assert rows[1].verb == "ran"
    assert status(t)[-1].verb == "present"
    uninstall(t)
    assert calls[-1] == ["schtasks", "/Delete", "/TN", name, "/F"]
    assert files_under(tmp_path) == []


def test_windows_schtasks_failure_is_reported(tmp_path: Path) -> None:
    def denied(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: Access is denied.\r\n")

    rows = install(target(tmp_path, "all-users", "win32", run=denied))
    assert ("failed", "ERROR: Access is denied.") in [(r.verb, r.note) for r in rows]

    def missing(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(2, "No such file or directory", "schtasks")

    rows = install(target(tmp_path, "user", "win32", run=missing))
    assert rows[1].verb == "failed"


# -- CLI --------------------------------------------------------------------------------


def test_ceilings_stay_above_the_policy_limits() -> None:
    assert ceilings(10.0, 200) == (25, 300, 400)
    cpu, high, top = ceilings(80.0, 1000)
    assert cpu > 80 and high > 1000 and top > high


def _service(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.run("service", *args)


def test_cli_install_status_uninstall_in_a_temp_root(cli: Cli, tmp_path: Path) -> None:
    root = str(tmp_path)
    done = _service(cli, "install", "--all-users", "--root", root, "--exec", "/usr/bin/deskcorder")
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "usr/lib/systemd/user/deskcorder.service"
    assert f"wrote     {unit}" in done.stdout
    assert "ExecStart=/usr/bin/deskcorder run" in unit.read_text()
    assert "CPUQuota=25%" in unit.read_text()
    done = _service(cli, "status", "--all-users", "--root", root, "--exec", "/usr/bin/deskcorder")
    assert done.returncode == 0 and done.stdout.count("present") == 3
    done = _service(cli, "uninstall", "--all-users", "--root", root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("removed") == 4  # 3 files and the empty .wants folder
    assert files_under(tmp_path) == []


def test_cli_install_sizes_the_unit_from_the_policy_limits(cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[limits]\ncpu_percent = 40\nmemory_mb = 500\n")
    root = tmp_path / "root"
    root.mkdir()
    done = _service(
        cli, "install", "--root", str(root), "--exec", "/x/deskcorder", "--policy", str(policy)
    )
    assert done.returncode == 0, done.stderr
    unit = next(root.rglob("deskcorder.service"))
    assert {"CPUQuota=100%", "MemoryHigh=750M", "MemoryMax=1000M"} <= set(
        unit.read_text().splitlines()
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["service"], 2, "choose an action"),
        (["service", "install", "--user", "--all-users"], 2, "not allowed with argument"),
        (["service", "install", "--root", "/nonexistent/dir"], 2, "not a directory"),
        (["service", "status", "--platform", "sunos5", "--exec", "/x"], 3, "no login service"),
        (["service", "install", "--policy", "/nonexistent/p.toml"], 2, "cannot read policy file"),
        (["service", "install", "--exec", "bin/deskcorder"], 2, "give an absolute path"),
    ],
)
def test_cli_errors_are_one_line_with_documented_exit_codes(
    cli: Cli, args: list[str], code: int, message: str
) -> None:
    done = cli.run(*args)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("deskcorder: error: ")


def test_cli_reports_a_file_it_cannot_write(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "usr").write_text("x")
    done = _service(cli, "install", "--all-users", "--root", str(tmp_path), "--exec", "/x")
    assert done.returncode == 1
    assert done.stderr.startswith("deskcorder: error: cannot write ")
    assert done.stderr.count("\n") == 1


def test_the_templates_own_comments_do_not_count_as_the_marker(tmp_path: Path) -> None:
    """A unit rendered by a package from the bare template is not ours to remove."""
    t = target(tmp_path, "all-users")
    unit = tmp_path / "usr/lib/systemd/user/deskcorder.service"
    unit.parent.mkdir(parents=True)
    unit.write_text((DATA / "deskcorder.service").read_text())
    assert MARKER not in unit.read_text()
    assert install(t)[0].verb == "kept"
    uninstall(t)
    assert unit.exists()


def test_python_dash_m_commands_render_on_every_platform(tmp_path: Path) -> None:
    pythonw = r"C:\Program Files\deskcorder\python\pythonw.exe"
    args = ("-m", "deskcorder")
    win = Target("all-users", pythonw, exec_args=args, platform="win32", root=tmp_path)
    root = _task(svc_windows.render_task(win))
    exe = root.find(f"{TASK_NS}Actions/{TASK_NS}Exec")
    assert exe is not None
    assert exe.findtext(f"{TASK_NS}Command") == pythonw
    assert exe.findtext(f"{TASK_NS}Arguments") == "-m deskcorder run"
    mac = Target("user", "/usr/local/bin/python3", args, "darwin", tmp_path, PurePosixPath("/h"))
    assert plistlib.loads(svc_macos.render_plist(mac))["ProgramArguments"] == [
        "/usr/local/bin/python3",
        "-m",
        "deskcorder",
        "run",
    ]
    lin = Target("user", "/usr/bin/python3", args, "linux", tmp_path, PurePosixPath("/h"))
    assert "ExecStart=/usr/bin/python3 -m deskcorder run" in svc_linux.render_unit(lin)


def test_default_exec_finds_the_script_next_to_python_or_falls_back_to_dash_m(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deskcorder.service import default_exec

    assert default_exec("linux") == (EXE, ())
    fake_python = tmp_path / "bin" / "python3"
    fake_python.parent.mkdir()
    fake_python.write_text("")
    monkeypatch.setattr(sys, "executable", str(fake_python))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert default_exec("linux") == (str(fake_python), ("-m", "deskcorder"))
    (tmp_path / "bin" / "pythonw.exe").write_text("")
    assert default_exec("win32") == (str(tmp_path / "bin" / "pythonw.exe"), ("-m", "deskcorder"))


def test_cli_status_compares_with_the_unit_sized_by_the_same_policy(
    cli: Cli, tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[limits]\nmemory_mb = 500\n")
    root = tmp_path / "root"
    root.mkdir()
    common = ["--root", str(root), "--exec", "/x/deskcorder", "--policy", str(policy)]
    assert _service(cli, "install", *common).returncode == 0
    done = _service(cli, "status", *common)
    assert done.returncode == 0 and done.stdout.count("present") == 3, done.stdout
    other = _service(cli, "status", "--root", str(root), "--exec", "/x/deskcorder")
    assert "outdated" in other.stdout  # default limits would write a different unit


def test_uninstall_keeps_a_wants_folder_that_other_units_use(tmp_path: Path) -> None:
    t = target(tmp_path)
    install(t)
    wants = tmp_path / "home/alice/.config/systemd/user/graphical-session.target.wants"
    (wants / "other.service").symlink_to("/usr/lib/systemd/user/other.service")
    rows = uninstall(t)
    assert str(wants) not in [r.subject for r in rows]
    assert files_under(tmp_path) == [
        "home/alice/.config/systemd/user/graphical-session.target.wants/other.service"
    ]


# The parts of the Task Scheduler 1.2 schema (taskschd.xsd) that the template uses:
# element -> (allowed children in schema order, whether the order is enforced (xs:sequence)).
TASK_STRUCTURE: dict[str, tuple[list[str], bool]] = {
    "Task": (["RegistrationInfo", "Triggers", "Settings", "Data", "Principals", "Actions"], False),
    "RegistrationInfo": (
        [
            "URI",
            "SecurityDescriptor",
            "Source",
            "Date",
            "Author",
            "Version",
            "Description",
            "Documentation",
        ],
        False,
    ),
    "Triggers": (["LogonTrigger", "BootTrigger", "TimeTrigger", "EventTrigger"], False),
    "LogonTrigger": (
        [
            "StartBoundary",
            "EndBoundary",
            "Enabled",
            "Repetition",
            "ExecutionTimeLimit",
            "UserId",
            "Delay",
        ],
        True,
    ),
    "Principals": (["Principal"], True),
    "Principal": (["UserId", "GroupId", "LogonType", "RunLevel", "DisplayName"], True),
    "Settings": (
        [
            "AllowStartOnDemand",
            "RestartOnFailure",
            "MultipleInstancesPolicy",
            "DisallowStartIfOnBatteries",
            "StopIfGoingOnBatteries",
            "AllowHardTerminate",
            "StartWhenAvailable",
            "NetworkProfileName",
            "RunOnlyIfNetworkAvailable",
            "WakeToRun",
            "Enabled",
            "Hidden",
            "DeleteExpiredTaskAfter",
            "IdleSettings",
            "NetworkSettings",
            "ExecutionTimeLimit",
            "Priority",
            "RunOnlyIfIdle",
            "UseUnifiedSchedulingEngine",
            "DisallowStartOnRemoteAppSession",
        ],
        False,
    ),
    "IdleSettings": (["Duration", "WaitTimeout", "StopOnIdleEnd", "RestartOnIdle"], False),
    "RestartOnFailure": (["Interval", "Count"], True),
    "Actions": (["Exec", "ComHandler", "SendEmail", "ShowMessage"], False),
    "Exec": (["Command", "Arguments", "WorkingDirectory"], True),
}
TASK_ENUMS = {
    "MultipleInstancesPolicy": {"Parallel", "Queue", "IgnoreNew", "StopExisting"},
    "LogonType": {"S4U", "Password", "InteractiveToken", "InteractiveTokenOrPassword"},
    "RunLevel": {"LeastPrivilege", "HighestAvailable"},
}


def _check_task_structure(element: ET.Element, path: str = "") -> None:
    name = element.tag.removeprefix(TASK_NS)
    here = f"{path}/{name}"
    if name in TASK_ENUMS:
        assert element.text in TASK_ENUMS[name], f"{here}: {element.text!r}"
    if name in ("Enabled", "Hidden", "StopOnIdleEnd", "RestartOnIdle", "WakeToRun"):
        assert element.text in ("true", "false"), here
    if name in ("Delay", "Interval", "ExecutionTimeLimit"):
        assert element.text is not None and element.text.startswith("PT"), here
    if name not in TASK_STRUCTURE:
        assert len(element) == 0, f"{here}: unexpected children"
        return
    allowed, ordered = TASK_STRUCTURE[name]
    children = [c.tag.removeprefix(TASK_NS) for c in element]
    for tag in children:
        assert tag in allowed, f"{here}: <{tag}> is not allowed here"
    assert len(children) == len(set(children)) or name in ("Triggers", "Actions"), here
    if ordered:
        assert children == sorted(children, key=allowed.index), f"{here}: order {children}"
    if name == "LogonTrigger" and "UserId" in children and "Delay" in children:
        assert children.index("UserId") < children.index("Delay"), f"{here}: order {children}"
    for child in element:
        _check_task_structure(child, here)


@pytest.mark.parametrize("scope", ["user", "all-users"])
def test_task_xml_follows_the_task_scheduler_schema(tmp_path: Path, scope: str) -> None:
    root = _task(svc_windows.render_task(target(tmp_path, scope, "win32", user=r"CORP\bob")))
    assert root.find(f"{TASK_NS}Actions") is not None  # the one required element
    _check_task_structure(root)


def test_task_structure_check_catches_a_misplaced_element(tmp_path: Path) -> None:
    root = _task(svc_windows.render_task(target(tmp_path, "user", "win32")))
    principal = root.find(f"{TASK_NS}Principals/{TASK_NS}Principal")
    assert principal is not None
    user_id = principal[0]
    principal.remove(user_id)
    principal.append(user_id)  # UserId after RunLevel
    with pytest.raises(AssertionError, match="order"):
        _check_task_structure(root)


@pytest.mark.parametrize(
    ("code", "out", "verb"),
    [(0, "active\n", "active"), (3, "inactive\n", "inactive"), (1, "failed\n", "failed")],
)
def test_linux_user_status_asks_systemd_whether_it_runs(
    tmp_path: Path, code: int, out: str, verb: str
) -> None:
    def systemctl(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert list(argv) == ["systemctl", "--user", "is-active", "deskcorder.service"]
        return subprocess.CompletedProcess(argv, code, out, "")

    rows = status(target(tmp_path, run=systemctl))
    assert rows[-1].verb == verb


def test_linux_status_without_a_user_session_says_unknown(tmp_path: Path) -> None:
    rows = status(target(tmp_path))  # staging root: systemctl is not called
    assert rows[-1].verb == "unknown"
    assert [r.verb for r in status(target(tmp_path, "all-users"))][-1] == "note"
