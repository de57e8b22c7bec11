"""End to end under a real X server: xdotool drives input, the agent records it.

One agent run does the whole scenario; then the sealed session is read back
through the public reader and compared event by event.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder import read_session
from deskcorder.capture.redact import key_class
from tests.e2e.agent import DESKCORDER, AgentProcess
from tests.xserver import XServer, wait_for, xserver

pytestmark = [pytest.mark.x11, pytest.mark.slow]

ALPHA = "deskcorder-alpha"
BETA = "deskcorder-beta"
BETA_RENAMED = "deskcorder-beta renamed ünï ✓"


class Desk:
    def __init__(self, x: XServer, alpha: subprocess.Popen[bytes], beta: subprocess.Popen[bytes]):
        self.x = x
        self.alpha = alpha
        self.beta = beta


@pytest.fixture(scope="module")
def desk() -> Iterator[Desk]:
    with xserver() as x:
        alpha = x.tk_window(ALPHA, x=40, y=40, width=500, height=400)
        beta = x.tk_window(BETA, x=700, y=40, width=500, height=400, color="lightblue")
        yield Desk(x, alpha, beta)


def client_origin(x: XServer, title: str) -> tuple[int, int]:
    wid = x.window_ids(title)[0]
    out = x.xdotool("getwindowgeometry", "--shell", wid)
    geo = dict(line.split("=", 1) for line in out.split())
    return int(geo["X"]), int(geo["Y"])


def compact(ev: Any) -> tuple[Any, ...]:
    """An event as a small tuple that the expected sequence spells out."""
    k, f = ev.kind, ev.fields
    if k == "mv":
        return ("mv", f["x"], f["y"])
    if k in ("bd", "bu"):
        return (k, f["b"], f["x"], f["y"])
    if k == "sc":
        return ("sc", f["dx"], f["dy"], f["x"], f["y"])
    if k in ("kd", "ku"):
        # printable keys are recorded as their class only (docs/privacy.md)
        return (k, f.get("key") or f.get("cls"), tuple(f.get("mods") or ()))
    if k == "focus":
        return ("focus", (f.get("win") or {}).get("title"))
    if k == "title":
        return ("title", f["title"])
    raise AssertionError(k)


KINDS = {"mv", "bd", "bu", "sc", "kd", "ku", "focus", "title"}


def keys(text_keys: list[tuple[str, bool]]) -> list[tuple[Any, ...]]:
    """Expected records for xdotool typing: (char, needs_shift) -> kd/ku tuples.

    A printable key is written as its class (letter, digit, space, punct), never
    its character, and without modifiers (docs/privacy.md).
    """
    out: list[tuple[Any, ...]] = []
    for ch, shifted in text_keys:
        ch = key_class(" " if ch == "space" else ch)
        if shifted:  # xdotool: shift down, key down, shift up, key up
            out += [
                ("kd", "shift", ()),
                ("kd", ch, ()),
                ("ku", "shift", ()),
                ("ku", ch, ()),
            ]
        else:
            out += [("kd", ch, ()), ("ku", ch, ())]
    return out


def test_agent_records_exact_input_and_window_context(desk: Desk, tmp_path: Path) -> None:
    x = desk.x
    x.activate(ALPHA)
    ax, ay = client_origin(x, ALPHA)
    bx, by = client_origin(x, BETA)
    p = [(ax + 20 + 30 * i, ay + 20 + 10 * i) for i in range(6)]
    q = (bx + 50, by + 60)

    with AgentProcess(x, tmp_path) as agent:
        agent.wait_ready()
        agent.wait_record({"k": "focus", "win.title": ALPHA})

        # mouse path, single, double and right click, a drag, four scrolls
        for px, py in p[:3]:
            x.xdotool("mousemove", str(px), str(py))
        x.xdotool("click", "1")
        x.xdotool("click", "--repeat", "2", "--delay", "40", "1")
        x.xdotool("click", "3")
        x.xdotool("mousedown", "1")
        x.xdotool("mousemove", str(p[3][0]), str(p[3][1]))
        x.xdotool("mousemove", str(p[4][0]), str(p[4][1]))
        x.xdotool("mouseup", "1")
        for button in ("4", "5", "6", "7"):
            x.xdotool("click", button)
        # typing: mixed case, digit, space, symbols; ctrl+c; shift+letter
        x.xdotool("type", "--delay", "20", "Hi 5!")
        x.xdotool("key", "ctrl+c")
        x.xdotool("key", "shift+a")

        # focus switch, then a click in the other window
        x.activate(BETA)
        agent.wait_record({"k": "focus", "win.title": BETA})
        x.xdotool("mousemove", str(q[0]), str(q[1]))
        x.xdotool("click", "1")
        # title change (the Tk window renames itself), then a key in the renamed window
        assert desk.beta.stdin is not None
        desk.beta.stdin.write(f"{BETA_RENAMED}\n".encode())
        desk.beta.stdin.flush()
        agent.wait_record({"k": "title", "title": BETA_RENAMED})
        x.xdotool("key", "z")

        def z_released() -> bool:
            recs = agent.records()
            kinds = [(r["k"], r.get("title")) for r in recs]
            after = kinds.index(("title", BETA_RENAMED)) if ("title", BETA_RENAMED) in kinds else -1
            return after >= 0 and any(r["k"] == "ku" for r in recs[after:])

        wait_for(z_released, 10, "the z key release after the title change")

        took = agent.terminate()
        assert agent.proc.returncode == 0, agent.output()
    assert took < 2.0, f"agent took {took:.2f}s to exit after SIGTERM"

    session_dir = next((agent.spool / "sessions").iterdir())
    assert not list(agent.spool.rglob("*.part")), "SIGTERM left an open chunk"
    session = read_session(session_dir)
    assert session.chunk_paths and not session.part_paths
    manifests = session.manifests()
    assert len(manifests) == len(session.chunk_paths)

    events = [e for e in session.events() if e.kind in KINDS]
    got = [compact(e) for e in events]
    p0, p1, p2, p3, p4 = p[:5]
    expected: list[tuple[Any, ...]] = [
        ("focus", ALPHA),
        ("mv", *p0),
        ("mv", *p1),
        ("mv", *p2),
        ("bd", "left", *p2), ("bu", "left", *p2),
        ("bd", "left", *p2), ("bu", "left", *p2),
        ("bd", "left", *p2), ("bu", "left", *p2),
        ("bd", "right", *p2), ("bu", "right", *p2),
        ("bd", "left", *p2),
        ("mv", *p3),
        ("mv", *p4),
        ("bu", "left", *p4),
        ("sc", 0, 1, *p4),
        ("sc", 0, -1, *p4),
        ("sc", -1, 0, *p4),
        ("sc", 1, 0, *p4),
        *keys([("H", True), ("i", False), ("space", False), ("5", False), ("!", True)]),
        ("kd", "ctrl", ()), ("kd", "c", ("ctrl",)), ("ku", "ctrl", ()), ("ku", "c", ("ctrl",)),
        ("kd", "shift", ()), ("kd", "letter", ()), ("ku", "shift", ()), ("ku", "letter", ()),
        ("focus", BETA),
        ("mv", *q),
        ("bd", "left", *q), ("bu", "left", *q),
        ("title", BETA_RENAMED),
        ("kd", "letter", ()), ("ku", "letter", ()),
    ]  # fmt: skip
    assert got == expected

    # every event is tied to the right window: title, app (WM_CLASS) and process
    pids = {ALPHA: desk.alpha.pid, BETA: desk.beta.pid, BETA_RENAMED: desk.beta.pid}
    current = ALPHA
    for ev, want in zip(events, expected, strict=True):
        if want[0] in ("focus", "title"):
            current = want[1]
        assert ev.window is not None, ev
        assert ev.window["title"] == current, (ev, current)
        assert ev.window["app"] == "Tk"
        assert ev.window["pid"] == pids[current]
        assert ev.window["process"].startswith("python")
        assert Path(ev.window["exe"]).name.startswith("python")
        assert len(ev.window["rect"]) == 4

    # no key record carries a printable character (nor a keysym spelling one).
    # Without an AT-SPI secure-input probe
    # `full` degrades to `redacted` (docs/privacy.md), and the header says so.
    key_events = [e for e in events if e.kind in ("kd", "ku")]
    assert not any(e.get("ch") is not None for e in key_events)
    assert not any(e.get("cls") and e.get("vk") is not None for e in key_events)
    header = session.headers()[0]
    assert header["keystrokes"] == "redacted"
    assert header["backend"] == "x11"
    assert header["screen"] == [[0, 0, 1920, 1080]]
    assert header["keyboard_layout"]


def test_sigterm_while_input_is_idle_exits_within_2s(desk: Desk, tmp_path: Path) -> None:
    """No input arrives after SIGTERM: the RECORD listeners must not wait for one."""
    with AgentProcess(desk.x, tmp_path) as agent:
        agent.wait_ready()
        took = agent.terminate()
        assert agent.proc.returncode == 0, agent.output()
    assert took < 2.0, f"{took:.2f}s"
    assert not list(agent.spool.rglob("*.part"))
    records = list(read_session(next((agent.spool / "sessions").iterdir())).records())
    assert records[-1]["k"] == "end"


def run_cli(x: XServer, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700, exist_ok=True)
    full_env = {**x.env, "DESKCORDER_RUNTIME_DIR": str(runtime), **env}
    return subprocess.run(
        [*DESKCORDER, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_doctor_passes_under_x11_with_a_window_manager(desk: Desk, tmp_path: Path) -> None:
    done = run_cli(desk.x, tmp_path, "doctor", "--backend", "x11", "--spool", str(tmp_path / "s"))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in (
        "display",
        "record-extension",
        "xres-extension",
        "window-manager",
        "pynput",
        "keyboard-layout",
    ):
        assert f"[ok  ] {name}:" in done.stdout
    assert "lock-detection:" in done.stdout


def test_wayland_session_is_refused_by_doctor_and_run(desk: Desk, tmp_path: Path) -> None:
    wayland = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}
    spool = str(tmp_path / "s")
    doctor = run_cli(desk.x, tmp_path, "doctor", "--backend", "x11", "--spool", spool, **wayland)
    assert doctor.returncode == 3
    assert "[FAIL] wayland: Wayland session: global input capture is impossible" in doctor.stdout
    run = run_cli(desk.x, tmp_path, "run", "--backend", "x11", "--spool", spool, **wayland)
    assert run.returncode == 3
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Wayland session" in lines[0] and "XWayland" in lines[0]


def test_without_window_manager_events_have_an_unknown_window(tmp_path: Path) -> None:
    with xserver(wm=False) as x:
        x.tk_window("nowm", x=0, y=0, width=300, height=200)
        with AgentProcess(x, tmp_path) as agent:
            agent.wait_ready()
            x.xdotool("mousemove", "50", "60", "click", "1")
            agent.wait_record({"k": "bu", "x": 50})
            assert agent.terminate() < 2.0
        session = read_session(next((agent.spool / "sessions").iterdir()))
        events = [e for e in session.events() if e.kind in KINDS]
    assert [compact(e) for e in events] == [
        ("focus", None),
        ("mv", 50, 60),
        ("bd", "left", 50, 60),
        ("bu", "left", 50, 60),
    ]
    assert all(e.window is None for e in events)


def test_sigterm_under_a_stream_of_input_exits_within_2s_with_sealed_chunks(
    desk: Desk, tmp_path: Path
) -> None:
    """1,000 XTEST moves/s keep arriving while the agent stops."""
    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib.ext import xtest

    stop = threading.Event()
    sent = [0]

    def drive() -> None:
        d = xdisplay.Display(desk.x.display)
        try:
            while not stop.is_set():
                for i in range(10):
                    xtest.fake_input(d, X.MotionNotify, x=300 + i, y=300 + sent[0] % 200)
                    sent[0] += 1
                d.sync()
                stop.wait(0.01)
        finally:
            d.close()

    with AgentProcess(desk.x, tmp_path) as agent:
        agent.wait_ready()
        driver = threading.Thread(target=drive, name="xtest-driver", daemon=True)
        driver.start()
        try:
            agent.wait_record({"k": "mv"})
            took = agent.terminate()
        finally:
            stop.set()
            driver.join(5)
        assert agent.proc.returncode == 0, agent.output()
    assert took < 2.0, f"{took:.2f}s"
    assert not list(agent.spool.rglob("*.part"))
    session = read_session(next((agent.spool / "sessions").iterdir()))
    records = list(session.records())
    assert records[-1]["k"] == "end"
    moves = sum(1 for e in session.events() if e.kind == "mv")
    assert 0 < moves <= sent[0]
