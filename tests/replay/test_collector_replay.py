"""``GET /v1/admin/sessions/{session}/replay`` on a real collector, opened in real Chromium.

The recorded session is uploaded by the real uploader (from a copy of its
spool) to a collector on loopback, on each storage backend (local files +
SQLite; fleet: SeaweedFS + PostgreSQL); the page is fetched with the admin token
and checked in the browser with the collector's own headers in force.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from deskcorder.policy.model import Upload
from deskcorder.upload.uploader import Uploader, pending_chunks
from tests.collector.helpers import ADMIN, ENROLL, CollectorProc
from tests.conftest import FleetFactory
from tests.replay.conftest import PageWatch, open_page, save_png, shot_loaded, text
from tests.replay.recording import EXPECTED, HOSTILE_TITLE, Recording
from tests.xserver import wait_for

pytestmark = pytest.mark.x11


@pytest.fixture(scope="module", params=["local", "fleet"])
def collector(
    request: pytest.FixtureRequest, recording: Recording, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CollectorProc]:
    """The recorded session uploaded to a collector on each storage backend."""
    root = tmp_path_factory.mktemp(f"collector-{request.param}")
    if request.param == "fleet":  # SeaweedFS and PostgreSQL, started once per test session
        seaweedfs = request.getfixturevalue("seaweedfs")
        postgres = request.getfixturevalue("postgres")
        proc = CollectorProc(root, None, fleet=FleetFactory(seaweedfs, postgres)()).start()
    else:
        proc = CollectorProc(root).start()
    try:
        spool = root / "spool"
        shutil.copytree(recording.spool, spool)  # the uploader deletes what it delivered
        settings = Upload(endpoint=proc.url, enroll_secret=ENROLL, timeout_s=5.0, backoff_max_s=0.2)
        up = Uploader(settings, spool, backoff_base=0.05)  # the agent's key, kept in the spool
        up.start()
        try:
            wait_for(lambda: not pending_chunks(spool), 30, "the session uploaded")
        finally:
            up.stop(5)
        yield proc
    finally:
        proc.stop()


def replay_url(collector: CollectorProc, session: str) -> str:
    return f"{collector.url}/v1/admin/sessions/{session}/replay"


def test_the_route_needs_the_admin_token_and_a_valid_session(
    collector: CollectorProc, recording: Recording
) -> None:
    url = replay_url(collector, recording.session)
    assert httpx.get(url, timeout=10).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert collector.admin("GET", "/v1/admin/sessions/..%2Fetc/replay").status_code in (400, 404)
    bad = collector.admin("GET", "/v1/admin/sessions/-bad/replay")
    assert bad.status_code == 400 and bad.json() == {"error": "invalid session id"}
    missing = collector.admin("GET", "/v1/admin/sessions/20990101T000000Z-00000000/replay")
    assert missing.status_code == 404 and missing.json() == {"error": "no such session"}
    steps = collector.admin("GET", f"/v1/admin/sessions/{recording.session}/replay?steps=x")
    assert steps.status_code == 400


def test_the_page_comes_with_a_strict_policy_and_inline_screenshots(
    collector: CollectorProc, recording: Recording
) -> None:
    resp = collector.admin("GET", f"/v1/admin/sessions/{recording.session}/replay")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    csp = resp.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; script-src 'sha256-")
    assert "img-src data:;" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp and "http" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["referrer-policy"] == "no-referrer"
    shots = {r["sha256"] for r in recording.records if r["k"] == "shot"}
    assert resp.text.count('<script type="text/plain" id="img-') == len(shots)
    records = collector.admin("GET", f"/v1/admin/sessions/{recording.session}/replay?steps=records")
    assert records.status_code == 200 and '"source":"records"' in records.text


def test_the_collector_page_in_the_browser(
    watched: PageWatch, collector: CollectorProc, recording: Recording
) -> None:
    from playwright.sync_api import expect

    page = watched.page
    page.context.set_extra_http_headers({"Authorization": f"Bearer {ADMIN}"})
    url = replay_url(collector, recording.session)
    open_page(watched, url, 3)
    n = len(EXPECTED)
    expect(page.locator("#step-counter")).to_have_text(f"Step 3 / {n}")
    assert text(page, "#step-label") == "left click"
    shot_loaded(page)
    assert str(page.locator("#shot").get_attribute("src")).startswith("data:image/webp;base64,")
    assert "KB images" in text(page, "#summary")  # counted from the inline screenshots
    assert text(page, "#scope").startswith("Uploaded session of user u-")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert text(page, "#win-title") == HOSTILE_TITLE
    watched.clean()
    # nothing but the page itself was fetched
    assert watched.requests and all(r.split("#")[0] == url for r in watched.requests)
    # the header's policy is in force: a script the page did not bring does not run
    ran = page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__injected = 1'; document.body.appendChild(s);"
        " return window.__injected === 1; }"
    )
    assert ran is False
    assert any("Content Security Policy" in e for e in watched.console_errors)
    save_png(page, "replay-collector.png")
