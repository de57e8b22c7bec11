"""Managed settings beyond a file: the Windows registry and macOS managed preferences.

Both are layers for :func:`deskcorder.policy.load.load_policy`'s
``extra_machine_layers``: they rank above the machine policy files and below an
explicit ``--policy FILE``, key by key, exactly like another machine file.

* Windows (Group Policy, ADMX in ``packaging/windows/admx``):
  ``HKLM\\Software\\Policies\\deskcorder\\<section>`` holds one value per key
  (``REG_DWORD`` for true/false and integers, ``REG_SZ`` for strings and
  numbers with a fraction, ``REG_MULTI_SZ`` for lists); ``schedule\\hours`` is a
  subkey with one ``REG_MULTI_SZ`` per weekday.
* macOS (MDM, ``.mobileconfig`` in ``packaging/macos``): the managed preferences
  domain ``com.deskcorder.agent``, read from
  ``/Library/Managed Preferences/com.deskcorder.agent.plist``; its top-level keys
  are the policy's sections, each a dictionary (``Payload*`` keys of the MDM
  envelope are ignored).

The OS reads are small functions (:func:`read_registry_tree`,
:func:`read_managed_plist`) that tests replace; the conversions are pure.
"""

from __future__ import annotations

import plistlib
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from deskcorder.errors import PolicyError
from deskcorder.policy.load import Layer
from deskcorder.policy.model import Policy

REGISTRY_KEY = r"Software\Policies\deskcorder"
REGISTRY_SOURCE = r"HKLM\Software\Policies\deskcorder"
MANAGED_DOMAIN = "com.deskcorder.agent"
MANAGED_PLIST = Path("/Library/Managed Preferences") / f"{MANAGED_DOMAIN}.plist"

RegTree = dict[str, Any]  # value name -> python value; subkey name -> RegTree


# ---------------------------------------------------------------------------
# Windows registry
# ---------------------------------------------------------------------------


def read_registry_tree(key_path: str = REGISTRY_KEY) -> RegTree | None:
    """HKLM\\``key_path`` as nested dicts (None if the key does not exist)."""
    if sys.platform != "win32":
        return None
    import winreg

    def walk(key: Any) -> RegTree:  # winreg.HKEYType
        tree: RegTree = {}
        index = 0
        while True:
            try:
                name, value, _kind = winreg.EnumValue(key, index)
            except OSError:
                break
            tree[name] = value
            index += 1
        index = 0
        while True:
            try:
                sub = winreg.EnumKey(key, index)
            except OSError:
                break
            with winreg.OpenKey(key, sub) as child:
                tree[sub] = walk(child)
            index += 1
        return tree

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path) as root:
            return walk(root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyError(f"{REGISTRY_SOURCE}: cannot read: {exc.strerror or exc}") from exc


def _field_type(path: tuple[str, ...]) -> Any:
    model: type[BaseModel] = Policy
    ann: Any = None
    for part in path:
        info = model.model_fields.get(part)
        if info is None:
            return None
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return ann


def _convert(value: Any, ann: Any, where: str) -> Any:
    origin = get_origin(ann)
    if ann is bool:
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
            return value.strip().lower() in ("1", "true")
        return value  # validation names the key and the wrong value
    if ann is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if ann is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if origin is tuple and isinstance(value, str):
        return [line for line in value.splitlines() if line] if "\n" in value else [value]
    if origin is dict and isinstance(value, dict):
        inner = get_args(ann)[1] if get_args(ann) else None
        # an empty list (a weekday left empty in Group Policy) means the same as no entry
        return {k: _convert(v, inner, f"{where}\\{k}") for k, v in value.items() if v != []}
    return value


def registry_to_policy(tree: RegTree) -> dict[str, Any]:
    """Registry values -> policy data, converted by the type each key has in the model."""
    data: dict[str, Any] = {}
    for section, values in tree.items():
        if not isinstance(values, dict):
            data[section] = values  # a value at the top: validation reports it
            continue
        out: dict[str, Any] = {}
        for key, value in values.items():
            ann = _field_type((section, key))
            out[key] = _convert(value, ann, f"{section}\\{key}")
        data[section] = out
    return data


# ---------------------------------------------------------------------------
# macOS managed preferences
# ---------------------------------------------------------------------------


def read_managed_plist(path: Path | None = None) -> dict[str, Any] | None:
    """The managed preferences for our domain (None if MDM set none)."""
    path = path or MANAGED_PLIST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = plistlib.loads(raw)
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise PolicyError(f"{path}: not a valid property list") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: expected a dictionary at the top")
    return data


def plist_to_policy(data: dict[str, Any]) -> dict[str, Any]:
    """Managed preferences -> policy data (MDM ``Payload*`` envelope keys dropped)."""
    return {k: v for k, v in data.items() if not k.startswith("Payload")}


# ---------------------------------------------------------------------------
# the layer hook
# ---------------------------------------------------------------------------


def managed_layers(platform: str | None = None) -> list[Layer]:
    """The managed-settings layers for this OS (empty when none are set)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        tree = read_registry_tree()
        return [Layer(REGISTRY_SOURCE, registry_to_policy(tree))] if tree else []
    if platform == "darwin":
        data = read_managed_plist()
        return [Layer(str(MANAGED_PLIST), plist_to_policy(data))] if data else []
    return []
