"""Managed settings: Windows registry (ADMX) and macOS managed preferences (.mobileconfig)."""

from __future__ import annotations

import importlib.util
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from deskcorder.errors import PolicyError
from deskcorder.policy import managed
from deskcorder.policy.load import Layer, build_policy, load_policy
from deskcorder.policy.model import Policy

REPO = Path(__file__).resolve().parents[2]
ADMX = REPO / "packaging/windows/admx/deskcorder.admx"
ADML = REPO / "packaging/windows/admx/en-US/deskcorder.adml"
MOBILECONFIG = REPO / "packaging/macos/deskcorder.mobileconfig"
PPPC = REPO / "packaging/macos/deskcorder-pppc.mobileconfig"
GP = "{http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions}"


def make_admx() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_admx", REPO / "packaging/windows/make_admx.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- registry -> policy ---------------------------------------------------------------


def test_registry_values_convert_by_the_model_type() -> None:
    tree = {
        "capture": {"screenshots": 1, "mouse_move_hz": "30.5", "keystrokes": "off"},
        "exclusions": {"apps": ["keepass.exe", "1password.exe"], "titles": "(?i)bank"},
        "schedule": {"enabled": 1, "hours": {"mon": ["08:00-12:00", "13:00-17:00"]}},
        "pause": {"max_minutes": 15, "on_lock": 0},
        "limits": {"memory_mb": "300"},
    }
    policy = build_policy([Layer(managed.REGISTRY_SOURCE, managed.registry_to_policy(tree))])
    p = policy.policy
    assert p.capture.screenshots is True and p.capture.mouse_move_hz == 30.5
    assert p.capture.keystrokes == "off"
    assert p.exclusions.apps == ("keepass.exe", "1password.exe")
    assert p.exclusions.titles == ("(?i)bank",)
    assert p.schedule.hours == {"mon": ("08:00-12:00", "13:00-17:00")}
    assert p.pause.on_lock is False and p.pause.max_minutes == 15
    assert p.limits.memory_mb == 300
    assert policy.source_of(("capture", "screenshots")) == r"HKLM\Software\Policies\deskcorder"


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"capture": {"screenshots": 7}}, "capture.screenshots: expected true or false, got 7"),
        ({"capture": {"nope": 1}}, "capture.nope: unknown key"),
        ({"limits": {"memory_mb": "lots"}}, "limits.memory_mb: expected an integer"),
        ({"capture": 1}, "capture: expected a table"),
    ],
)
def test_bad_registry_values_name_the_key_and_the_registry(
    tree: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyError) as err:
        build_policy([Layer(managed.REGISTRY_SOURCE, managed.registry_to_policy(tree))])
    assert str(err.value).startswith(r"HKLM\Software\Policies\deskcorder: " + message)


def test_managed_layer_ranks_above_machine_files_and_below_explicit_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = tmp_path / "machine"
    machine.mkdir()
    (machine / "policy.toml").write_text(
        "[capture]\nscreenshots = false\nmouse_move_hz = 20.0\nkeystrokes = 'shortcuts'\n"
    )
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[capture]\nkeystrokes = 'off'\n")
    monkeypatch.setattr(
        managed,
        "read_registry_tree",
        lambda: {"capture": {"screenshots": 1, "keystrokes": "full"}},
    )
    loaded = load_policy(
        explicit,
        machine_dir=machine,
        extra_machine_layers=lambda: managed.managed_layers("win32"),
    )
    cap = loaded.policy.capture
    assert cap.screenshots is True  # registry over machine file
    assert cap.mouse_move_hz == 20.0  # machine file where the registry is silent
    assert cap.keystrokes == "off"  # explicit file over registry
    assert loaded.source_of(("capture", "screenshots")) == managed.REGISTRY_SOURCE
    assert loaded.source_of(("capture", "mouse_move_hz")) == str(machine / "policy.toml")


def test_no_managed_settings_means_no_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(managed, "read_registry_tree", lambda: None)
    monkeypatch.setattr(managed, "read_managed_plist", lambda: None)
    assert managed.managed_layers("win32") == []
    assert managed.managed_layers("darwin") == []
    assert managed.managed_layers("linux") == []
    assert managed.read_registry_tree() is None  # not Windows: never touches anything


# -- ADMX / ADML ------------------------------------------------------------------------


def test_admx_and_adml_are_generated_from_the_current_model() -> None:
    admx, adml = make_admx().render()
    assert ADMX.read_text() == admx, "run: python packaging/windows/make_admx.py"
    assert ADML.read_text() == adml, "run: python packaging/windows/make_admx.py"


def _registry_value(policy: ET.Element, default: Any) -> Any:
    """What Group Policy writes when an admin enables the setting at its default."""
    if policy.find(f"{GP}enabledValue") is not None:
        return 1 if default else 0
    (element,) = list(policy.find(f"{GP}elements") or [])
    kind = element.tag.removeprefix(GP)
    if kind == "decimal":
        return int(default)
    if kind == "multiText":
        return list(default)
    return str(default)  # text, enum: REG_SZ


def test_every_admx_setting_maps_to_a_policy_key_and_round_trips() -> None:
    root = ET.parse(ADMX).getroot()
    strings = {s.get("id") for s in ET.parse(ADML).getroot().iter(f"{GP}string")}
    presentations = {p.get("id") for p in ET.parse(ADML).getroot().iter(f"{GP}presentation")}
    defaults = Policy()
    seen = set()
    tree: dict[str, Any] = {}
    for policy in root.iter(f"{GP}policy"):
        for attr in ("displayName", "explainText"):
            ref = policy.get(attr, "")
            assert ref.startswith("$(string.") and ref[9:-1] in strings, ref
        if policy.get("presentation"):
            assert policy.get("presentation", "")[15:-1] in presentations
        key = policy.get("key", "")
        assert key.startswith("Software\\Policies\\deskcorder\\")
        section = key.split("\\")[3]
        value_name = policy.get("valueName")
        elements = policy.find(f"{GP}elements")
        if value_name is None and elements is not None and elements[0].get("key"):
            # schedule.hours: one multiText per weekday in a subkey
            field = elements[0].get("key", "").split("\\")[4]
            tree.setdefault(section, {})[field] = {
                e.get("valueName"): list(defaults.schedule.hours.get(e.get("valueName", ""), ()))
                for e in elements
            }
            seen.add((section, field))
            continue
        if value_name is None:
            assert elements is not None
            value_name = elements[0].get("valueName")
        assert value_name is not None
        default = getattr(getattr(defaults, section), value_name)
        if hasattr(default, "get_secret_value"):
            default = "s3cret"
        tree.setdefault(section, {})[value_name] = _registry_value(policy, default)
        seen.add((section, value_name))
    model_keys = {
        (section, key)
        for section, info in Policy.model_fields.items()
        for key in info.annotation.model_fields  # type: ignore[union-attr]
    }
    assert seen == model_keys
    tree["identity"]["org_key"] = "k"
    loaded = build_policy([Layer("registry", managed.registry_to_policy(tree))])
    assert loaded.policy.capture == defaults.capture
    assert loaded.policy.schedule == defaults.schedule
    assert loaded.policy.spool == defaults.spool


def test_make_admx_check_reports_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = make_admx()
    assert module.main(["--check"]) == 0
    monkeypatch.setattr(module, "HERE", tmp_path)
    assert module.main(["--check"]) == 1


# -- macOS managed preferences ----------------------------------------------------------


def test_example_mobileconfig_payload_is_a_valid_policy(tmp_path: Path) -> None:
    profile = plistlib.loads(MOBILECONFIG.read_bytes())
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == managed.MANAGED_DOMAIN
    # what macOS writes to /Library/Managed Preferences/com.deskcorder.agent.plist
    prefs = tmp_path / "com.deskcorder.agent.plist"
    prefs.write_bytes(plistlib.dumps(payload, fmt=plistlib.FMT_BINARY))
    data = managed.read_managed_plist(prefs)
    assert data is not None
    loaded = build_policy([Layer(str(prefs), managed.plist_to_policy(data))])
    assert loaded.policy.capture.screenshots is True
    assert loaded.policy.schedule.hours["fri"] == ("08:00-16:00",)
    assert loaded.policy.exclusions.apps == ("com.apple.keychainaccess", "com.1password.1password")


def test_managed_plist_layer_on_macos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefs = tmp_path / "com.deskcorder.agent.plist"
    prefs.write_bytes(plistlib.dumps({"PayloadUUID": "x", "pause": {"allowed": False}}))
    monkeypatch.setattr(managed, "MANAGED_PLIST", prefs)
    (layer,) = managed.managed_layers("darwin")
    assert layer.source == str(prefs)
    assert layer.data == {"pause": {"allowed": False}}


def test_unreadable_managed_plist_is_a_one_line_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.plist"
    bad.write_bytes(b"not a plist")
    with pytest.raises(PolicyError, match=r"bad.plist: not a valid property list$"):
        managed.read_managed_plist(bad)
    array = tmp_path / "array.plist"
    array.write_bytes(plistlib.dumps([1, 2]))
    with pytest.raises(PolicyError, match="expected a dictionary at the top"):
        managed.read_managed_plist(array)
    assert managed.read_managed_plist(tmp_path / "missing.plist") is None
    with pytest.raises(PolicyError, match="cannot read"):
        managed.read_managed_plist(tmp_path)  # a folder


def test_pppc_profile_cannot_pre_grant_screen_recording_or_input_monitoring() -> None:
    profile = plistlib.loads(PPPC.read_bytes())
    (tcc,) = profile["PayloadContent"]
    assert tcc["PayloadType"] == "com.apple.TCC.configuration-profile-policy"
    services = tcc["Services"]
    assert services["Accessibility"][0]["Authorization"] == "Allow"
    for name in ("ScreenCapture", "ListenEvent"):
        assert services[name][0]["Authorization"] == "AllowStandardUserToSetSystemService"
