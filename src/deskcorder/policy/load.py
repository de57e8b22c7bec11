"""Policy files -> :class:`Policy`, with the source of every effective value.

Layers, lowest first: built-in defaults < machine policy (fixed per-OS paths:
``policy.toml`` then ``policy.d/*.toml`` in name order) < an explicit
``--policy FILE``. Later layers override earlier ones key by key; lists are
replaced, not merged.

The machine directory is deliberately *not* platformdirs' ``site_config_dir``:
a user's environment (``XDG_CONFIG_DIRS``) can redirect that, and the machine
policy is IT's, not the user's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from deskcorder.errors import PolicyError
from deskcorder.policy.model import Policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_SOURCE = "default"
KeyPath = tuple[str, ...]


def _windows_program_data() -> Path:
    """%ProgramData% from the shell's known-folder API, not from the environment."""
    try:
        import ctypes
        from ctypes import wintypes

        class GUID(ctypes.Structure):
            _fields_ = [
                ("Data1", wintypes.DWORD),
                ("Data2", wintypes.WORD),
                ("Data3", wintypes.WORD),
                ("Data4", wintypes.BYTE * 8),
            ]

        # FOLDERID_ProgramData {62AB5D82-FDC1-4DC3-A9DD-070D1D495D97}
        fid = GUID(
            0x62AB5D82,
            0xFDC1,
            0x4DC3,
            (wintypes.BYTE * 8)(0xA9, 0xDD, 0x07, 0x0D, 0x1D, 0x49, 0x5D, 0x97),
        )
        out = ctypes.c_wchar_p()
        shell32 = ctypes.windll.shell32  # type: ignore[attr-defined,unused-ignore]
        if shell32.SHGetKnownFolderPath(ctypes.byref(fid), 0, None, ctypes.byref(out)) == 0:
            path = out.value or r"C:\ProgramData"
            ctypes.windll.ole32.CoTaskMemFree(out)  # type: ignore[attr-defined,unused-ignore]
            return Path(path)
    except (OSError, AttributeError, ValueError):
        pass
    return Path(r"C:\ProgramData")


def machine_policy_dir(platform: str | None = None) -> Path:
    """The fixed per-OS directory holding IT's machine policy."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        return _windows_program_data() / "deskcorder"
    if platform == "darwin":
        return Path("/Library/Application Support/deskcorder")
    return Path("/etc/deskcorder")


def machine_policy_files(directory: Path) -> list[Path]:
    """``policy.toml`` then ``policy.d/*.toml`` in name order (those that exist)."""
    files: list[Path] = []
    main = directory / "policy.toml"
    if main.exists():
        files.append(main)
    drop_in = directory / "policy.d"
    if drop_in.is_dir():
        files.extend(sorted(p for p in drop_in.glob("*.toml") if p.is_file()))
    return files


@dataclass
class Layer:
    """One source of settings: a name (a file path, 'default', a registry key) and its data."""

    source: str
    data: dict[str, Any]


@dataclass
class LoadedPolicy:
    policy: Policy
    sources: dict[KeyPath, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def source_of(self, path: Iterable[str]) -> str:
        """Which layer set the value at ``path`` (longest matching prefix)."""
        key = tuple(path)
        deeper = [src for k, src in self.sources.items() if k[: len(key)] == key]
        if deeper and key not in self.sources:
            return deeper[-1]  # a table set by a file (e.g. an unknown section)
        while key:
            if key in self.sources:
                return self.sources[key]
            key = key[:-1]
        return DEFAULT_SOURCE

    def effective(self) -> list[tuple[str, Any, str]]:
        """Flattened ``(dotted.key, value, source)`` rows, secrets masked."""
        rows: list[tuple[str, Any, str]] = []
        _flatten(self.policy, (), rows, self)
        return rows


def _flatten(
    value: Any, path: KeyPath, rows: list[tuple[str, Any, str]], loaded: LoadedPolicy
) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _flatten(getattr(value, name), (*path, name), rows, loaded)
        return
    if isinstance(value, SecretStr):
        value = "**********" if value.get_secret_value() else ""
    elif isinstance(value, tuple):
        value = list(value)
    elif isinstance(value, dict):
        value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
    rows.append((".".join(path), value, loaded.source_of(path)))


def read_toml(path: Path) -> dict[str, Any]:
    """Read one TOML file; every failure is a one-line PolicyError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise PolicyError(f"{path}: cannot read policy file: {reason}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not UTF-8 text at byte {exc.start}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc).splitlines()[0]
        raise PolicyError(f"{path}: TOML syntax error: {msg}") from exc


def _merge(
    base: dict[str, Any],
    top: Mapping[str, Any],
    source: str,
    sources: dict[KeyPath, str],
    path: KeyPath = (),
) -> None:
    for key, value in top.items():
        here = (*path, key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and not _is_leaf(here):
            _merge(base[key], value, source, sources, here)
        elif isinstance(value, Mapping) and not _is_leaf(here):
            base[key] = {}
            _merge(base[key], value, source, sources, here)
        else:
            base[key] = value
            sources[here] = source
            # a replaced leaf invalidates sources recorded for deeper keys
            for old in [k for k in sources if len(k) > len(here) and k[: len(here)] == here]:
                sources[old] = source


def _is_leaf(path: KeyPath) -> bool:
    """Dict-valued settings that are replaced as a whole, not merged key by key."""
    return path == ("schedule", "hours")


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


_TYPE_WORDS = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _describe(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    etype = err.get("type", "")
    got = err.get("input")
    if etype == "extra_forbidden":
        parent = _model_at(model, tuple(str(p) for p in err["loc"][:-1]))
        if parent is not None:
            return "unknown key; expected one of: " + ", ".join(parent.model_fields)
        return "unknown key"
    if etype in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[etype]}, got {_show(got)}"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected one of {expected}, got {_show(got)}"
    ctx = err.get("ctx", {})
    bounds = {
        "greater_than": "> {gt}",
        "greater_than_equal": ">= {ge}",
        "less_than": "< {lt}",
        "less_than_equal": "<= {le}",
        "too_short": "at least {min_length} long",
    }
    if etype in bounds:
        return f"expected a value {bounds[etype].format(**ctx)}, got {_show(got)}"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    return msg


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    current: type[BaseModel] = model
    for part in path:
        field_info = current.model_fields.get(part)
        ann = getattr(field_info, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        current = ann
    return current


def build_policy(layers: list[Layer]) -> LoadedPolicy:
    """Merge ``layers`` (lowest first) and validate. Raises PolicyError."""
    merged: dict[str, Any] = {}
    sources: dict[KeyPath, str] = {}
    for layer in layers:
        _merge(merged, layer.data, layer.source, sources)
    try:
        policy = Policy.model_validate(_tuplify(merged), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(policy)"
        where = (
            LoadedPolicy(Policy.model_construct(), sources).source_of(loc)
            if loc
            else (layers[-1].source if layers else DEFAULT_SOURCE)
        )
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise PolicyError(f"{where}: {key}: {_describe(err, Policy)}{more}") from exc
    files = [layer.source for layer in layers if layer.source != DEFAULT_SOURCE]
    return LoadedPolicy(policy=policy, sources=sources, files=files)


ExtraLayers = Callable[[], list[Layer]]


def load_policy(
    explicit: str | os.PathLike[str] | None = None,
    *,
    machine_dir: Path | None = None,
    extra_machine_layers: ExtraLayers | None = None,
) -> LoadedPolicy:
    """Load the effective policy.

    ``machine_dir`` defaults to :func:`machine_policy_dir`; tests pass their own.
    ``extra_machine_layers`` supplies managed settings (Windows registry, macOS
    managed preferences) that rank above machine files and below ``--policy``.
    """
    layers: list[Layer] = []
    directory = machine_dir if machine_dir is not None else machine_policy_dir()
    for path in machine_policy_files(directory):
        layers.append(Layer(str(path), read_toml(path)))
    if extra_machine_layers is not None:
        layers.extend(extra_machine_layers())
    if explicit is not None:
        path = Path(explicit)
        layers.append(Layer(str(path), read_toml(path)))
    return build_policy(layers)
