"""Replay pages of a one-hour session with 1,000 screenshots: size, build time, open time.

``python bench/bench_replay.py [--minutes 60] [--shots 1000] [--repeat 3] [--json]``

1. Makes a session like a real one: the reference workload (bench/workload.py)
   cut to ``--minutes`` of session time, run through the real pipeline with
   screenshots on, and ``--shots`` distinct 1280x720 WebP screenshots (q70, the
   policy default; text-heavy desktop scenes) stored in the spool and recorded
   after clicks and at even intervals.
2. Writes the local page (``deskcorder replay``: page + screenshot folder) and
   the collector's page (screenshots inline), timing each and reporting sizes.
3. Opens each page in Debian's headless Chromium (Playwright, one browser)
   ``--repeat`` times: time from navigation start to the page drawn (its
   ``replay-ready`` mark) and to the first screenshot decoded; then steps 200
   times with the keyboard (a key press and the frame showing its step) and
   scrolls the screenshot sheet to its end 100 px a frame (a brisk 6,000 px/s
   at 60 frames/s), reporting frame intervals (requestAnimationFrame) and how
   many screenshots were loaded.
4. Baseline, same run, same browser: a plain page with the same screenshots as
   ``<img>`` elements without lazy loading and no script (what a viewer that
   simply lists them would be), timed to its ``load`` event.

Hold the heavy lock for figures: ``flock /tmp/deskcorder-heavy.lock .venv/bin/python
bench/bench_replay.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.replay.browser import ARGS as CHROMIUM_ARGS
from tests.replay.browser import CHROMIUM

from deskcorder.capture.pipeline import Pipeline
from deskcorder.commands.replay import session_document, write_page
from deskcorder.events import (
    FORMAT_NAME,
    FORMAT_VERSION,
    RAW_BUTTON,
    RAW_SHOT,
    ShotInfo,
)
from deskcorder.policy.load import Layer, build_policy
from deskcorder.replay import Images, images_of, render
from deskcorder.storage.blobs import BlobStore
from deskcorder.storage.reader import list_sessions
from deskcorder.storage.spool import Spool
from workload import generate

T0 = 1_000_000_000
SESSION = "20261127T090000Z-bench001"
_TEXT = "report budget meeting notes draft review quarterly sales figures customer project plan"
WORDS = _TEXT.split()


def header(seq: int) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "session": SESSION,
        "seq": seq,
        "device": "d-bench",
        "user": "u-bench",
        "identity": "pseudonymous",
        "agent": "deskcorder/bench",
        "backend": "fake",
        "os": "Linux",
        "screen": [[0, 0, 1920, 1080]],
        "keyboard_layout": "us",
        "policy_digest": "0" * 64,
        "keystrokes": "redacted",
        "mouse_move_hz": 60.0,
        "clock": {"t": 0, "unix_ns": 1_795_000_000_000_000_000, "utc": "2026-11-18T10:06:40Z"},
    }


def screenshot(i: int, rnd: random.Random) -> bytes:
    """A 1280x720 desktop-like scene: windows with lines of text (a busy, realistic frame)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1280, 720), (32, 36, 44))
    draw = ImageDraw.Draw(img)
    for w in range(3):
        x0, y0 = rnd.randrange(0, 700), rnd.randrange(0, 300)
        x1, y1 = x0 + rnd.randrange(400, 580), y0 + rnd.randrange(250, 420)
        draw.rectangle((x0, y0, x1, y1), fill=(250, 250, 250), outline=(90, 90, 90))
        draw.rectangle((x0, y0, x1, y0 + 22), fill=(60, 90, 160))
        draw.text((x0 + 8, y0 + 5), f"window {i}-{w}", fill=(255, 255, 255))
        for line in range(y0 + 30, y1 - 12, 14):
            text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(4, 12)))
            draw.text((x0 + 8, line), text, fill=(20, 20, 20))
    out = io.BytesIO()
    img.save(out, "WEBP", quality=70, method=0)
    return out.getvalue()


def make_session(root: Path, minutes: float, shots: int, seed: int = 1) -> Path:
    """A spool with one session of ``minutes`` of workload and ``shots`` screenshots."""
    seconds = minutes * 60
    raws = [
        r
        for r in generate(int(75_000 * minutes / 60) + 2_000, t0_ns=T0)
        if r[1] - T0 < seconds * 1e9
    ]
    policy = build_policy(
        [Layer("bench", {"capture": {"screenshots": True}, "spool": {"chunk_max_age_s": 3600}})]
    ).policy
    spool = Spool(root, policy.spool)
    spool.ensure()
    store = BlobStore(spool.blobs_dir)
    rnd = random.Random(seed)
    clicks = [r[1] for r in raws if r[0] == RAW_BUTTON and r[5]]
    times = sorted(rnd.sample(clicks, min(len(clicks), shots // 2)))
    step = seconds * 1e9 / max(1, shots - len(times))
    times += [T0 + int(k * step + 500_000_000) for k in range(shots - len(times))]
    shot_raws = []
    for i, t in enumerate(sorted(times)):
        sha, _ = store.put(screenshot(i, rnd))
        info = ShotInfo(
            sha, "webp", 1280, 720, (0, 0, 1920, 1080), "click" if t in clicks else "interval"
        )
        shot_raws.append((RAW_SHOT, t + 40_000_000, info))
    merged = sorted(raws + shot_raws, key=lambda r: r[1])
    pipeline = Pipeline(policy, spool, header, session_id=SESSION, t0_ns=T0, clock_ns=lambda: T0)
    pipeline.start()
    for raw in merged:
        pipeline.queue.put_control(raw)
    assert pipeline.stop(120)
    return root


def write_pages(spool: Path, out: Path) -> dict[str, Any]:
    (session,) = list_sessions(spool)
    blobs = BlobStore(spool / "blobs")
    start = time.perf_counter()
    doc = session_document(session, blobs)
    built = time.perf_counter()
    written = write_page(doc, blobs, out / "replay.html")
    done = time.perf_counter()
    start_inline = time.perf_counter()
    inline = out / "inline.html"
    with open(inline, "w", encoding="utf-8") as fh:
        pieces = render(
            doc, Images("inline", blobs=((sha, blobs.read(sha)) for sha, _ in images_of(doc)))
        )
        fh.writelines(pieces)
    inline_s = time.perf_counter() - start_inline
    baseline = out / "baseline.html"
    imgs = "".join(
        f'<img src="replay.files/{sha}.webp" width="320" height="180">' for sha, _ in images_of(doc)
    )
    baseline.write_text(f"<!doctype html><html><body>{imgs}</body></html>")
    summary = doc["summary"]
    first_shot = next((i + 1 for i, step in enumerate(doc["steps"]) if "shot" in step), 1)
    return {
        "first_shot_step": first_shot,
        "records": summary["records"],
        "events": summary["events"],
        "steps": summary["steps"],
        "screenshots": summary["screenshots"],
        "duration_s": round(summary["duration_ms"] / 1000),
        "chunk_bytes": summary["chunk_bytes"],
        "image_bytes": written.image_bytes,
        "page_bytes": written.page_bytes,
        "inline_page_bytes": inline.stat().st_size,
        "build_doc_s": round(built - start, 3),
        "write_page_s": round(done - built, 3),
        "inline_render_s": round(inline_s, 3),
    }


_READY = """() => new Promise((resolve, reject) => {
  const give_up = setTimeout(() => reject(new Error('page not drawn within 60 s: ' +
    document.getElementById('step-counter').textContent)), 60000);
  const wait = () => {
    const mark = performance.getEntriesByName('replay-ready')[0];
    const img = document.getElementById('shot');
    if (mark && img && img.complete && img.naturalWidth > 0) {
      const done = () => { clearTimeout(give_up);
        resolve({ready_ms: mark.startTime, shot_ms: performance.now()}); };
      img.decode().then(done, done);
    } else setTimeout(wait, 5);
  };
  wait();
})"""

_FRAMES = """async () => {
  const sheet = document.getElementById('sheet');
  const gaps = [];
  let last = performance.now();
  let on = true;
  const tick = (now) => { gaps.push(now - last); last = now; if (on) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  // to the end of the sheet (its height changes as thumbnails are laid out: measure each time)
  const bottom = () => sheet.offsetTop + sheet.offsetHeight;
  for (let moved = true; moved && window.scrollY + innerHeight < bottom();) {
    const before = window.scrollY;
    window.scrollBy(0, 100);  // 6,000 px/s at 60 frames/s: a brisk scroll
    await new Promise(r => requestAnimationFrame(r));
    moved = window.scrollY !== before;
  }
  await new Promise(r => setTimeout(r, 300));
  on = false;
  const imgs = [...sheet.querySelectorAll('img')];
  const loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  gaps.sort((a, b) => a - b);
  return {frames: gaps.length, p50_ms: gaps[gaps.length >> 1],
          p95_ms: gaps[Math.floor(gaps.length * 0.95)], max_ms: gaps[gaps.length - 1],
          long_frames: gaps.filter(g => g > 50).length, loaded};
}"""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def browse(out: Path, repeat: int, step: int, steps: int) -> dict[str, Any]:
    """Open the pages at ``step`` (the first step with a screenshot)."""
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {"files": [], "inline": [], "baseline": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for _ in range(repeat):
                for name in ("files", "inline"):
                    say(f"open {name}")
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = context.new_page()
                    page_file = out / ("replay.html" if name == "files" else "inline.html")
                    page.goto(f"{page_file.as_uri()}#step={step}", wait_until="commit")
                    results[name].append(page.evaluate(_READY))
                    context.close()
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                page.goto((out / "baseline.html").as_uri(), wait_until="load")
                nav = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                results["baseline"].append({"load_ms": nav})
                context.close()
            say("step and scroll")
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{(out / 'replay.html').as_uri()}#step={step}")
            page.evaluate(_READY)
            page.keyboard.press("Home")
            presses = min(200, steps - 1)
            # in the page: a key press, then the frame that shows its step (no driver round trip)
            results["step_ms"] = page.evaluate(
                """async (n) => {
                  const t0 = performance.now();
                  for (let i = 0; i < n; i++) {
                    document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}));
                    await new Promise(r => requestAnimationFrame(r));
                  }
                  return Math.round((performance.now() - t0) / n * 100) / 100;
                }""",
                presses,
            )
            results["presses"] = presses
            results["scroll"] = page.evaluate(_FRAMES)
            results["sheet_images"] = page.locator("#sheet img").count()
            context.close()
        finally:
            browser.close()
    return results


def median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", metavar="DIR", type=Path, help="keep the session and pages here")
    args = parser.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-replay-"))
    if args.keep:
        tmp.mkdir(mode=0o700)
    try:
        t = time.perf_counter()
        say("making the session")
        make_session(tmp / "spool", args.minutes, args.shots)
        say("writing the pages")
        made = time.perf_counter() - t
        (tmp / "out").mkdir(mode=0o700)
        sizes = write_pages(tmp / "spool", tmp / "out")
        seen = browse(tmp / "out", args.repeat, sizes["first_shot_step"], sizes["steps"])
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {"session": sizes, "session_made_s": round(made, 1), "browser": seen}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    s, b = sizes, seen
    mb = 1024 * 1024
    print(
        f"session: {s['duration_s']} s, {s['records']:,} records, {s['events']:,} input events, "
        f"{s['steps']:,} steps, {s['screenshots']:,} screenshots"
    )
    kb = s["chunk_bytes"] / 1024
    print(f"  records {kb:,.0f} KB, screenshots {s['image_bytes'] / mb:.1f} MB")
    print(
        f"local page: {s['page_bytes'] / mb:.2f} MB (+ screenshot folder); "
        f"document {s['build_doc_s']} s, written in {s['write_page_s']} s"
    )
    print(
        f"collector page (inline): {s['inline_page_bytes'] / mb:.1f} MB, "
        f"rendered in {s['inline_render_s']} s"
    )
    for name in ("files", "inline"):
        print(
            f"open {name:7s}: drawn {median(b[name], 'ready_ms')} ms, first screenshot "
            f"{median(b[name], 'shot_ms')} ms (median of {args.repeat})"
        )
    print(
        f"baseline (plain <img> list, no lazy loading): load {median(b['baseline'], 'load_ms')} ms"
    )
    sc = b["scroll"]
    print(
        f"step with the keyboard: {b['step_ms']} ms per step, key to frame ({b['presses']} steps)"
    )
    print(
        f"scroll the {b['sheet_images']} screenshots: {sc['frames']} frames, "
        f"p50 {sc['p50_ms']:.1f} ms, "
        f"p95 {sc['p95_ms']:.1f} ms, max {sc['max_ms']:.1f} ms, {sc['long_frames']} over 50 ms; "
        f"{sc['loaded']} loaded"
    )


if __name__ == "__main__":
    main()
