"""Generate the Group Policy templates (ADMX + en-US ADML) from the policy model.

    python packaging/windows/make_admx.py            # rewrite packaging/windows/admx/
    python packaging/windows/make_admx.py --check    # exit 1 if the files are stale

One Group Policy setting per policy key, so that precedence stays key by key:
a setting that is "Not configured" leaves the key to the machine policy file.
Each writes ``HKLM\\Software\\Policies\\deskcorder\\<section>`` value ``<key>``
in the form :mod:`deskcorder.policy.managed` reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from xml.sax.saxutils import escape, quoteattr

from pydantic import BaseModel, SecretStr

from deskcorder.policy.managed import REGISTRY_KEY
from deskcorder.policy.model import WEEKDAYS, Policy

HERE = Path(__file__).resolve().parent / "admx"
NS = "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"
HEAD_ATTRS = (
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    f'revision="1.0" schemaVersion="1.0" xmlns="{NS}"'
)
MAX_DWORD = 2147483647


def _bounds(info: Any) -> tuple[int, int]:
    lo, hi = 0, MAX_DWORD
    for meta in info.metadata:
        for attr, fn in (("ge", lambda v: v), ("gt", lambda v: v + 1)):
            if getattr(meta, attr, None) is not None:
                lo = max(lo, int(fn(getattr(meta, attr))))
        for attr, fn in (("le", lambda v: v), ("lt", lambda v: v - 1)):
            if getattr(meta, attr, None) is not None:
                hi = min(hi, int(fn(getattr(meta, attr))))
    return lo, hi


def _label(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def settings() -> list[tuple[str, str, Any, Any]]:
    """(section, key, annotation, field info) for every policy key, in model order."""
    rows = []
    for section, sinfo in Policy.model_fields.items():
        model = sinfo.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, info in model.model_fields.items():
            rows.append((section, key, info.annotation, info))
    return rows


def render() -> tuple[str, str]:
    policies: list[str] = []
    strings: dict[str, str] = {
        "deskcorder": "deskcorder",
        "SUPPORTED_DESKCORDER": "deskcorder 0.1 or later",
    }
    presentations: list[str] = []
    categories = ['    <category name="deskcorder" displayName="$(string.deskcorder)"/>']
    for section, sinfo in Policy.model_fields.items():
        cat = f"cat_{section}"
        strings[cat] = f"[{section}]"
        categories.append(
            f'    <category name="{cat}" displayName="$(string.{cat})">'
            '<parentCategory ref="deskcorder"/></category>'
        )
        del sinfo
    defaults = Policy()
    for section, key, ann, info in settings():
        name = f"{section}_{key}"
        default = getattr(getattr(defaults, section), key)
        desc = info.description or ""
        strings[name] = f"{section}.{key}"
        explain = (
            f"{_label(desc)}.\n\nPolicy key: {section}.{key}"
            if desc
            else (f"Policy key: {section}.{key}")
        )
        regkey = f"{REGISTRY_KEY}\\{section}"
        head = (
            f'    <policy name="{name}" class="Machine" displayName="$(string.{name})" '
            f'explainText="$(string.{name}_help)" key="{regkey}"'
        )
        common = (
            f'      <parentCategory ref="cat_{section}"/>\n'
            '      <supportedOn ref="SUPPORTED_DESKCORDER"/>\n'
        )
        origin = get_origin(ann)
        if ann is bool:
            explain += f"\n\nEnabled = true, Disabled = false. Default: {str(default).lower()}."
            policies.append(
                f'{head} valueName="{key}">\n{common}'
                '      <enabledValue><decimal value="1"/></enabledValue>\n'
                '      <disabledValue><decimal value="0"/></disabledValue>\n'
                "    </policy>"
            )
            strings[f"{name}_help"] = explain
            continue
        if origin is dict:  # schedule.hours: a subkey with one list per weekday
            elements = "".join(
                f'        <multiText id="{day}" key="{regkey}\\{key}" valueName="{day}"/>\n'
                for day in WEEKDAYS
            )
            boxes = "".join(
                f'      <multiTextBox refId="{day}">{day}: spans like 09:00-17:00, '
                "one per line</multiTextBox>\n"
                for day in WEEKDAYS
            )
            explain += "\n\nOne list per weekday; a day left empty has no work hours."
        elif origin is tuple:
            elements = f'        <multiText id="value" valueName="{key}"/>\n'
            boxes = (
                f'      <multiTextBox refId="value">{escape(key)} (one per line)</multiTextBox>\n'
            )
        elif origin is Literal:
            items = "".join(
                f'          <item displayName="$(string.{name}_{v})"><value>'
                f"<string>{v}</string></value></item>\n"
                for v in get_args(ann)
            )
            for v in get_args(ann):
                strings[f"{name}_{v}"] = v
            elements = f'        <enum id="value" valueName="{key}">\n{items}        </enum>\n'
            idx = list(get_args(ann)).index(default)
            boxes = (
                f'      <dropdownList refId="value" defaultItem="{idx}">{escape(key)}'
                "</dropdownList>\n"
            )
        elif ann is int:
            lo, hi = _bounds(info)
            elements = (
                f'        <decimal id="value" valueName="{key}" minValue="{lo}" maxValue="{hi}"/>\n'
            )
            boxes = (
                f'      <decimalTextBox refId="value" defaultValue="{default}">'
                f"{escape(key)}</decimalTextBox>\n"
            )
        else:  # str, SecretStr, float: REG_SZ
            secret = ann is SecretStr
            shown = "" if secret else str(default)
            elements = f'        <text id="value" valueName="{key}"/>\n'
            boxes = (
                f'      <textBox refId="value"><label>{escape(key)}</label>'
                f"<defaultValue>{escape(shown)}</defaultValue></textBox>\n"
            )
            if secret:
                explain += (
                    "\n\nA secret: users of this computer can read HKLM\\Software\\Policies, "
                    "as they can read the machine policy file."
                )
        if origin is not dict and ann is not SecretStr:
            explain += (
                f"\n\nDefault: {default if not isinstance(default, tuple) else list(default)}."
            )
        strings[f"{name}_help"] = explain
        policies.append(
            f'{head} presentation="$(presentation.{name})">\n{common}'
            f"      <elements>\n{elements}      </elements>\n    </policy>"
        )
        presentations.append(f'    <presentation id="{name}">\n{boxes}    </presentation>')
    admx = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<!-- Generated by packaging/windows/make_admx.py from the policy model; do not edit. -->\n"
        f"<policyDefinitions {HEAD_ATTRS}>\n"
        "  <policyNamespaces>\n"
        '    <target prefix="deskcorder" namespace="Deskcorder.Policies.Deskcorder"/>\n'
        "  </policyNamespaces>\n"
        '  <resources minRequiredRevision="1.0"/>\n'
        "  <supportedOn>\n    <definitions>\n"
        '      <definition name="SUPPORTED_DESKCORDER" '
        'displayName="$(string.SUPPORTED_DESKCORDER)"/>\n'
        "    </definitions>\n  </supportedOn>\n"
        "  <categories>\n" + "\n".join(categories) + "\n  </categories>\n"
        "  <policies>\n" + "\n".join(policies) + "\n  </policies>\n"
        "</policyDefinitions>\n"
    )
    table = "\n".join(
        f"      <string id={quoteattr(k)}>{escape(v)}</string>" for k, v in strings.items()
    )
    adml = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<!-- Generated by packaging/windows/make_admx.py from the policy model; do not edit. -->\n"
        f"<policyDefinitionResources {HEAD_ATTRS}>\n"
        "  <displayName>deskcorder</displayName>\n"
        "  <description>Settings of the deskcorder desktop activity recorder. Each setting "
        "overrides the same key of the machine policy file; an explicit --policy file "
        "overrides both.</description>\n"
        "  <resources>\n    <stringTable>\n" + table + "\n    </stringTable>\n"
        "    <presentationTable>\n" + "\n".join(presentations) + "\n    </presentationTable>\n"
        "  </resources>\n</policyDefinitionResources>\n"
    )
    return admx, adml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    admx, adml = render()
    files = {HERE / "deskcorder.admx": admx, HERE / "en-US" / "deskcorder.adml": adml}
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path}: stale; run python packaging/windows/make_admx.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
