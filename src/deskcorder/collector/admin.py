"""``deskcorder collector person NAME``: a data-subject request, by login, over the admin API.

The login goes to the collector (which holds the pseudonym key) in a request
body; this tool needs no key, only an admin token. It prints every pseudonym
of the login (one user pseudonym per machine, the machines, the devices), and
with ``--export FILE`` / ``--erase`` exports or erases all of that person's
data on every machine.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, TextIO

import httpx

from deskcorder.errors import DeskcorderError


def _client(url: str, token: str, ca_bundle: str | None) -> httpx.Client:
    verify: ssl.SSLContext | bool = True
    if ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise DeskcorderError(f"--ca-bundle {ca_bundle}: {exc}") from exc
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        verify=verify,
        timeout=httpx.Timeout(60.0),
    )


def _check(resp: httpx.Response, what: str) -> None:
    if resp.status_code >= 400:
        try:
            reason = str(resp.json().get("error"))
        except ValueError:
            reason = resp.reason_phrase
        raise DeskcorderError(f"{what}: HTTP {resp.status_code} ({reason})")


def person_command(
    url: str,
    token: str,
    login: str,
    *,
    ca_bundle: str | None = None,
    as_json: bool = False,
    export: Path | None = None,
    erase: bool = False,
    out: TextIO,
) -> int:
    try:
        with _client(url, token, ca_bundle) as client:
            resp = client.post("/v1/admin/people", json={"login": login})
            _check(resp, "person lookup")
            found: dict[str, Any] = resp.json()
            person = found["person"]
            if export is not None:
                with client.stream("GET", f"/v1/admin/people/{person}/export") as stream:
                    _check(stream, "export")
                    with open(export, "wb") as fh:
                        for piece in stream.iter_bytes():
                            fh.write(piece)
                found["exported_to"] = str(export)
            if erase:
                gone = client.delete(f"/v1/admin/people/{person}")
                _check(gone, "erasure")
                found["erased"] = gone.json()["erased"]
    except httpx.HTTPError as exc:
        raise DeskcorderError(f"{url}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise DeskcorderError(f"{export}: cannot write the export: {exc.strerror}") from exc
    if as_json:
        out.write(json.dumps(found, indent=2) + "\n")
        return 0
    out.write(f"person {person}: {len(found['devices'])} device(s)\n")
    for d in found["devices"]:
        state = "revoked" if d.get("revoked") else "active"
        out.write(f"  user {d['user']}  machine {d['machine']}  device {d['device']}  {state}\n")
    if "exported_to" in found:
        out.write(f"exported to {found['exported_to']}\n")
    if "erased" in found:
        counts = ", ".join(f"{v} {k}" for k, v in found["erased"].items())
        out.write(f"erased {counts}\n")
    return 0
