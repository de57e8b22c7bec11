"""Demo of real capture: ``python -m tests.e2e.demo_x11 [SPOOL]``.

Starts a private Xvfb + openbox with two Tk windows, records them with
``deskcorder run --backend x11`` while xdotool moves, clicks, scrolls, types
and switches windows, stops the agent with SIGTERM and shows the session with
``deskcorder inspect --events``. Needs the Debian packages of .ci/setup.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.agent import DESKCORDER, AgentProcess
from tests.xserver import xserver


def main() -> int:
    spool_arg = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmpdir, xserver() as x:
        tmp = Path(tmpdir)
        x.tk_window("Notes - Editor", x=40, y=40, width=600, height=400)
        browser = x.tk_window("Docs - Browser", x=700, y=40, width=600, height=400)
        x.activate("Notes - Editor")
        with AgentProcess(x, tmp) as agent:
            agent.wait_ready()
            print(f"== recording display {x.display} into {agent.spool}")
            x.xdotool("mousemove", "200", "200", "click", "1")
            x.xdotool("type", "--delay", "30", "Hello, world 42!")
            x.xdotool("key", "ctrl+s")
            x.activate("Docs - Browser")
            agent.wait_record({"k": "focus", "win.title": "Docs - Browser"})
            x.xdotool("mousemove", "900", "250", "click", "4", "click", "5", "click", "3")
            assert browser.stdin is not None
            browser.stdin.write(b"Docs (page 2) - Browser\n")
            browser.stdin.flush()
            agent.wait_record({"k": "title"})
            took = agent.terminate()
            print(f"== SIGTERM: agent exited with {agent.proc.returncode} after {took:.2f} s")
            spool = agent.spool
            if spool_arg is not None:
                subprocess.run(["cp", "-r", str(spool), str(spool_arg)], check=True)
                spool = spool_arg
        print("== deskcorder inspect")
        subprocess.run([*DESKCORDER, "inspect", "--spool", str(spool)], check=True)
        print("== deskcorder inspect --events")
        subprocess.run([*DESKCORDER, "inspect", "--spool", str(spool), "--events"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
