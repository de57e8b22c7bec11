"""The main job, headless: ``python -m tests.e2e.demo_x11 [SPOOL]``.

Starts a reference collector on loopback, a private Xvfb + openbox with three
Tk windows (an editor, a browser, and a private-browsing window that policy
excludes), and records them with ``deskcorder run --backend x11`` under a
policy that uploads to the collector. xdotool moves, clicks, scrolls, types
and switches windows; the user pauses and resumes; the agent stops on
SIGTERM. Then it shows what stayed on the machine (``deskcorder inspect``)
and what reached the collector (its admin API, and the session's replay page
from ``/v1/admin/sessions/{session}/replay``, docs/replay.md). Needs the
packages of .ci/setup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.collector.helpers import ENROLL, CollectorProc
from tests.e2e.agent import DESKCORDER, AgentProcess
from tests.xserver import wait_for, xserver

POLICY = """\
[capture]
keystrokes = "redacted"      # the default: key kinds and shortcuts, never characters
screenshots = true           # on click, on focus, after typing (for the dataset's observations)

[identity]
org = "demo"

[upload]
endpoint = "{url}"
enroll_secret = "{enroll}"

[spool]
flush_interval_s = 0.2
chunk_max_age_s = 2          # seal (and upload) a chunk every 2 s for the demo
"""

PRIVATE = "New Incognito Tab - Chromium"


def main() -> int:
    spool_arg = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    pages = (spool_arg.parent if spool_arg is not None else Path.cwd()) / "demo-replay"
    with tempfile.TemporaryDirectory() as tmpdir, xserver() as x:
        tmp = Path(tmpdir)
        collector = CollectorProc(tmp).start()
        try:
            print(f"== collector listening on {collector.url} (data in {collector.data})")
            x.tk_window("Notes - Editor", x=40, y=40, width=600, height=400)
            browser = x.tk_window("Docs - Browser", x=700, y=40, width=600, height=400)
            x.tk_window(PRIVATE, x=300, y=500, width=600, height=300, color="#333333")
            x.activate("Notes - Editor")
            policy = POLICY.format(url=collector.url, enroll=ENROLL)
            with AgentProcess(x, tmp, policy) as agent:
                agent.wait_ready()
                print(f"== recording display {x.display} into {agent.spool}")
                print("== typing in the editor (recorded as key kinds only), ctrl+s")
                x.xdotool("mousemove", "200", "200", "click", "1")
                x.xdotool("type", "--delay", "30", "Hello, world 42!")
                x.xdotool("key", "ctrl+s")
                print("== the browser: scroll, right click; its title changes")
                x.activate("Docs - Browser")
                agent.wait_record({"k": "focus", "win.title": "Docs - Browser"})
                x.xdotool("mousemove", "900", "250", "click", "4", "click", "5", "click", "3")
                assert browser.stdin is not None
                browser.stdin.write(b"Docs (page 2) - Browser\n")
                browser.stdin.flush()
                agent.wait_record({"k": "title"})
                print(f"== a private browsing window ({PRIVATE!r}): only a marker is kept")
                x.activate(PRIVATE)
                agent.wait_record({"k": "excl"})
                x.xdotool("type", "--delay", "30", "my private search")
                print("== deskcorder pause / resume: nothing in between is recorded")
                x.activate("Notes - Editor")
                agent.wait_record({"k": "focus", "win.title": "Notes - Editor"})
                print("   " + agent.cli("pause", "--minutes", "5").strip())
                x.xdotool("type", "--delay", "30", "during the pause")
                print("   " + agent.cli("resume").strip())
                x.xdotool("type", "--delay", "30", "done")
                print("== waiting until a sealed chunk has been uploaded and acknowledged")
                wait_for(lambda: _uploaded(agent) >= 1, 30, "an upload")
                print(agent.cli("status").rstrip())
                took = agent.terminate()
                print(f"== SIGTERM: agent exited with {agent.proc.returncode} after {took:.2f} s")
                spool = agent.spool
                if spool_arg is not None:
                    subprocess.run(["cp", "-r", str(spool), str(spool_arg)], check=True)
                    spool = spool_arg
            print("== deskcorder inspect (what is still on this machine)")
            subprocess.run([*DESKCORDER, "inspect", "--spool", str(spool)], check=True)
            print("== what reached the collector (admin API)")
            sessions = collector.admin("GET", "/v1/admin/sessions").json()["sessions"]
            for row in sessions:
                print(
                    f"   session {row['session']}: {row['chunks']} chunk(s), "
                    f"{row['records']} records, {row['bytes']} bytes, user {row['user']}"
                )
            first = sessions[0]["session"]
            chunk = collector.admin("GET", f"/v1/admin/sessions/{first}/chunks/0").content
            print(
                f"== its chunk 0 as the collector stored it (zstd -dc | jq -c), {len(chunk)} bytes"
            )
            lines = (
                subprocess.run(["zstd", "-dc"], input=chunk, capture_output=True, check=True)
                .stdout.decode()
                .splitlines()
            )
            for line in lines[1:]:
                print("   " + json.dumps(json.loads(line), ensure_ascii=False))
            _replay_page(collector, first, pages)
        finally:
            collector.stop()
        if spool_arg is not None:  # the collector's data, for `deskcorder dataset build`
            keep = spool_arg.with_name("demo-collector")
            subprocess.run(["rm", "-rf", str(keep)], check=True)
            subprocess.run(["cp", "-r", str(collector.data), str(keep)], check=True)
            print(f"== the collector's data folder is kept in {keep}")
    return 0


def _replay_page(collector: CollectorProc, session: str, pages: Path) -> None:
    """The whole session as the data team sees it: the collector's replay page."""
    if pages.exists():
        shutil.rmtree(pages)
    pages.mkdir(mode=0o700)
    resp = collector.admin("GET", f"/v1/admin/sessions/{session}/replay")
    resp.raise_for_status()
    page = pages / "demo-replay.html"
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(resp.content)
    print(f"== its replay page, as the collector holds it ({len(resp.content):,} bytes): {page}")


def _uploaded(agent: AgentProcess) -> int:
    try:
        status = json.loads(agent.cli("status", "--json"))
    except (ValueError, subprocess.CalledProcessError):
        return 0
    uploader = status.get("uploader") or {}
    return int(uploader.get("chunks_uploaded") or 0)


if __name__ == "__main__":
    sys.exit(main())
