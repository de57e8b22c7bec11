"""Built-in window exclusions: private browsing windows and password managers.

:class:`~deskcorder.capture.gates.Gates` applies the policy's own app/title
deny- and allowlists; this module adds the rules that are on by default
(``exclusions.private_browsing`` and ``exclusions.password_managers``). A
matched window yields only an ``excl`` marker naming the rule kind
(``private_browsing`` / ``password_manager``), never its title. Any failure
while checking means "excluded" (the gate catches and fails closed).

Matching is on every identifier the window probe knows: WM_CLASS / bundle id
(``app``), process name, executable path and its file name, all
case-insensitive. Private windows are recognised by the title suffix the
browsers put on them (Chrome/Chromium/Brave "(Incognito)" / "Incognito",
Edge "InPrivate", Firefox "Private Browsing", Safari "Private", Opera
"Private") and, where the probe reports it, by WM_CLASS/app names such as
Firefox's ``Navigator`` private role. Titles are the only signal on most
systems: a browser that does not mark private windows in the title cannot be
recognised, which docs/privacy.md states.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from deskcorder.events import WindowInfo
from deskcorder.policy.model import Exclusions

PRIVATE_TITLE_RE = re.compile(
    r"(?i)("
    r"\(incognito\)|[-\u2014\u2013] incognito$|\bincognito (tab|window)\b|"
    r"\binprivate\b|"
    r"private browsing|privates surfen|navigation priv[ée]e|navegaci[óo]n privada|"
    r"\(private\)|[-\u2014\u2013] private$|private window"
    r")"
)

PASSWORD_MANAGERS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        # 1Password
        "1password", "1password.exe", "com.1password.1password", "com.agilebits.onepassword7",
        # Bitwarden
        "bitwarden", "bitwarden.exe", "com.bitwarden.desktop",
        # KeePass family
        "keepassxc", "keepassxc.exe", "org.keepassxc.keepassxc", "keepass", "keepass.exe",
        "keepassx", "keeweb", "keeweb.exe", "net.antelle.keeweb",
        # LastPass, Dashlane, Enpass, NordPass, RoboForm, Keeper, Proton Pass
        "lastpass", "lastpass.exe", "com.lastpass.lastpassmacdesktop",
        "dashlane", "dashlane.exe", "enpass", "enpass.exe", "in.sinew.enpass-desktop",
        "nordpass", "nordpass.exe", "roboform", "robotaskbaricon.exe", "keeper",
        "keeperpasswordmanager", "keeperpasswordmanager.exe", "proton pass", "proton-pass",
        # OS keychains and password prompts
        "keychain access", "com.apple.keychainaccess", "seahorse", "org.gnome.seahorse",
        "org.gnome.seahorse.application", "kwalletmanager5", "kwalletmanager",
        "pinentry", "pinentry-gtk-2", "pinentry-gnome3", "pinentry-qt", "pinentry-mac",
        "gcr-prompter", "ssh-askpass", "ksshaskpass", "polkit-gnome-authentication-agent-1",
        "credentialuibroker.exe", "consent.exe",
        # password-store GUIs
        "qtpass", "gopass",
    )
)  # fmt: skip

WindowRule = Callable[[WindowInfo], str | None]


def window_names(win: WindowInfo) -> set[str]:
    """Every identifier of ``win`` (app, process, exe and exe file name), lower case."""
    names = {n.lower() for n in (win.app, win.process, win.exe) if n}
    if win.exe:
        names.add(win.exe.replace("\\", "/").rsplit("/", 1)[-1].lower())
    return names


def is_private_browsing(win: WindowInfo) -> bool:
    return bool(win.title and PRIVATE_TITLE_RE.search(win.title))


def is_password_manager(win: WindowInfo) -> bool:
    if window_names(win) & PASSWORD_MANAGERS:
        return True
    # app names with decorations ("1Password 8", "Bitwarden - Vault")
    app = (win.app or "").lower()
    return any(app.startswith(p) for p in ("1password", "bitwarden", "keepass", "lastpass"))


def builtin_rules(cfg: Exclusions) -> list[WindowRule]:
    """The default exclusion rules the policy enables, for ``Gates.extra_window_rules``."""
    rules: list[WindowRule] = []
    if cfg.password_managers:
        rules.append(lambda win: "password_manager" if is_password_manager(win) else None)
    if cfg.private_browsing:
        rules.append(lambda win: "private_browsing" if is_private_browsing(win) else None)
    return rules
