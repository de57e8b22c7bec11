"""Windows: a Task Scheduler task that starts the agent at logon, in the user's session.

User scope: task ``\\deskcorder\\deskcorder-<user>`` triggered by that user's logon;
all users: task ``\\deskcorder\\deskcorder-all-users`` triggered by any logon and
run as the logged-on member of Users (needs an administrator). The XML that was
registered is kept next to the agent's data for IT to inspect
(``%LOCALAPPDATA%\\deskcorder`` or ``%ProgramData%\\deskcorder``).

Registration goes through ``schtasks /Create /XML`` (``Target.run``), so tests
replace it.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import PureWindowsPath

from deskcorder.service.base import (
    MARKER,
    Action,
    Planned,
    Target,
    fill,
    run_os,
    template,
)

TEMPLATE = "deskcorder-task.xml"
NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
USERS_GROUP_SID = "S-1-5-32-545"


def task_name(target: Target) -> str:
    if target.scope == "all-users":
        return r"\deskcorder\deskcorder-all-users"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target.user) or "user"
    return rf"\deskcorder\deskcorder-{safe}"


def render_task(target: Target) -> bytes:
    """The task definition as UTF-16 XML (what ``schtasks /XML`` expects)."""
    text = fill(template(TEMPLATE), {"EXEC": target.exec_path, "USER": target.user or "user"})
    ET.register_namespace("", NS)
    root = ET.fromstring(text)
    q = f"{{{NS}}}"
    arguments = root.find(f"{q}Actions/{q}Exec/{q}Arguments")
    assert arguments is not None
    arguments.text = subprocess.list2cmdline([*target.exec_args, "run"])
    uri = root.find(f"{q}RegistrationInfo/{q}URI")
    if uri is not None:
        uri.text = task_name(target)
    if target.scope == "all-users":
        trigger = root.find(f"{q}Triggers/{q}LogonTrigger")
        principal = root.find(f"{q}Principals/{q}Principal")
        assert trigger is not None and principal is not None
        for user_id in trigger.findall(f"{q}UserId"):
            trigger.remove(user_id)
        for name in ("UserId", "LogonType"):
            for el in principal.findall(f"{q}{name}"):
                principal.remove(el)
        group = ET.Element(f"{q}GroupId")
        group.text = USERS_GROUP_SID
        principal.insert(0, group)
    root.insert(0, ET.Comment(f" {MARKER}; `deskcorder service uninstall` removes it. "))
    body = ET.tostring(root, encoding="unicode")
    xml = '<?xml version="1.0" encoding="UTF-16"?>\n' + body + "\n"
    return xml.encode("utf-16")  # with BOM


def xml_path(target: Target) -> PureWindowsPath:
    if target.scope == "all-users":
        from deskcorder.policy.load import machine_policy_dir

        base = PureWindowsPath(str(machine_policy_dir("win32")))
    else:
        base = PureWindowsPath(str(target.home)) / "AppData" / "Local" / "deskcorder"
    return base / "deskcorder-task.xml"


def plan(target: Target) -> list[Planned]:
    return [
        Planned(
            xml_path(target),
            render_task(target),
            what="task definition (registered)",
            prune_parent=True,
        )
    ]


def after_install(target: Target) -> list[Action]:
    argv = ["schtasks", "/Create", "/XML", str(target.path(xml_path(target)))]
    argv += ["/TN", task_name(target), "/F"]
    return [
        run_os(target, argv, "register the logon task"),
        Action("note", "starts at the next logon; now: schtasks /Run /TN " + task_name(target)),
    ]


def before_uninstall(target: Target) -> list[Action]:
    argv = ["schtasks", "/Delete", "/TN", task_name(target), "/F"]
    return [run_os(target, argv, "unregister the logon task")]


def after_uninstall(target: Target) -> list[Action]:
    return []


def query(target: Target) -> Action:
    row = run_os(target, ["schtasks", "/Query", "/TN", task_name(target)], "registered")
    state = {"ran": "present", "failed": "missing"}.get(row.verb, row.verb)
    return Action(state, f"task {task_name(target)}", row.note)
