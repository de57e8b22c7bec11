"""``deskcorder replay``, ``review --html`` and ``inspect --html`` as a user runs them."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from deskcorder.storage.approval import approve
from deskcorder.storage.blobs import BlobStore
from deskcorder.storage.spool import Spool
from tests.conftest import Cli
from tests.replay.helpers import EDITOR, SESSION, click, put_image, shot, write_session

pytest.importorskip("PIL")


def page_data(page: Path) -> dict[str, Any]:
    text = page.read_text()
    found = re.search(r'<script type="application/json" id="replay-data">(.*?)</script>', text)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    red, blue = put_image(root, "red"), put_image(root, "blue")
    write_session(
        root,
        [
            [
                {"k": "start", "t": 0},
                {"k": "focus", "t": 1000, "win": EDITOR},
                *click(500, 10, 20),
                shot(540, red),
            ],
            [
                *click(2000, 30, 40),
                shot(2040, blue),
                {"k": "end", "t": 3_000_000, "reason": "stop"},
            ],
        ],
    )
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir(mode=0o700)
    return folder


def test_replay_writes_a_private_page_with_its_screenshots_beside_it(
    cli: Cli, spool: Path, home: Path
) -> None:
    out = home / "s.html"
    done = cli.run("replay", "--spool", str(spool), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"replay written: {out} ({out.stat().st_size:,} bytes, 2 screenshot(s) in s.files/)"
    )
    assert mode(out) == 0o600 and mode(home / "s.files") == 0o700
    images = sorted(p.name for p in (home / "s.files").iterdir())
    shas = sorted(sha for sha in BlobStore(spool / "blobs"))
    assert images == sorted([f"{sha}.webp" for sha in shas] + [f"{sha}.thumb.webp" for sha in shas])
    assert all(mode(p) == 0o600 for p in (home / "s.files").iterdir())
    from PIL import Image

    with Image.open(home / "s.files" / f"{shas[0]}.thumb.webp") as thumb:
        assert thumb.size == (320, 180)  # small enough already
    data = page_data(out)
    assert [s["k"] for s in data["steps"]] == ["start", "focus", "click", "click", "end"]
    assert data["summary"]["chunks"] == 2 and data["summary"]["image_bytes"] > 0


def test_a_second_page_with_fewer_screenshots_leaves_no_stale_ones(
    cli: Cli, spool: Path, home: Path
) -> None:
    out = home / "s.html"
    assert cli.run("replay", SESSION, "--spool", str(spool), "--out", str(out)).returncode == 0
    store = BlobStore(spool / "blobs")
    gone = next(iter(store))
    store.path(gone).unlink()  # uploaded and removed from this machine
    done = cli.run("replay", SESSION, "--spool", str(spool), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "1 screenshot(s) in s.files/; 1 screenshot(s) no longer on this machine" in done.stdout
    left = next(iter(store))
    assert sorted(p.name for p in (home / "s.files").iterdir()) == [
        f"{left}.thumb.webp",
        f"{left}.webp",
    ]
    assert page_data(out)["summary"]["images_missing"] == 1


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("shared", "others may write into this folder"),
        ("other", "owned by another account"),
        ("link", "is a symbolic link"),
        ("missing", "no such folder"),
        ("suffix", "must end in .html"),
    ],
)
def test_pages_are_written_only_in_the_users_own_folders(
    cli: Cli, spool: Path, home: Path, tmp_path: Path, where: str, error: str
) -> None:
    if where == "shared":
        folder = tmp_path / "shared"
        folder.mkdir()
        folder.chmod(0o1777)  # like /tmp
        out = folder / "s.html"
    elif where == "other":
        if os.geteuid() != 0:
            pytest.skip("needs root to give a folder to another account")
        folder = tmp_path / "theirs"
        folder.mkdir(mode=0o755)
        os.chown(folder, 65534, 65534)
        out = folder / "s.html"
    elif where == "link":
        (home / "elsewhere.html").write_text("mine")
        out = home / "s.html"
        out.symlink_to(home / "elsewhere.html")
        error = "exists and is not a regular file"
    elif where == "missing":
        out = home / "nope" / "s.html"
    else:
        out = home / "s.txt"
    done = cli.run("replay", "--spool", str(spool), "--out", str(out))
    assert done.returncode == 2, done.stdout
    assert error in done.stderr and done.stderr.count("\n") == 1
    if where == "link":
        assert (home / "elsewhere.html").read_text() == "mine"


def test_replay_of_an_unknown_session_is_a_usage_error(cli: Cli, spool: Path, home: Path) -> None:
    done = cli.run("replay", "20990101T000000Z-00000000", "--spool", str(spool))
    assert done.returncode == 2
    assert done.stderr == (
        f"deskcorder: error: 20990101T000000Z-00000000: no such session in {spool} "
        "(see `deskcorder inspect`)\n"
    )
    done = cli.run("replay", "--spool", str(home / "empty"))
    assert done.returncode == 1 and "no sessions here" in done.stderr


def test_review_html_shows_each_chunk_with_how_to_approve_or_delete_it(
    cli: Cli, spool: Path, home: Path
) -> None:
    approve(Spool(spool).sealed_chunks()[0])
    out = home / "review"
    done = cli.run("review", "--html", "--spool", str(spool), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"review pages written: {out / 'review.html'} (")
    index = (out / "review.html").read_text()
    assert index.count("waiting for approval") == 1 and index.count(">approved<") == 1
    assert f'href="{SESSION}-000001.html"' in index
    data = page_data(out / f"{SESSION}-000001.html")
    scope = data["scope"]
    assert scope["note"].startswith(f"Chunk 000001 of session {SESSION}: waiting for your approval")
    spool_arg = f" --spool {spool}"
    assert scope["commands"] == [
        ["Approve", f"deskcorder review approve {SESSION}/000001{spool_arg}"],
        ["Delete", f"deskcorder review delete {SESSION}/000001{spool_arg}"],
    ]
    # only this chunk's records; the window comes from the chunk before it
    assert [s["k"] for s in data["steps"]] == ["click", "end"]
    assert data["windows"][data["steps"][0]["win"]]["title"] == "Notes - Editor"
    assert data["chunks"] == [{"seq": 1, "bytes": data["summary"]["chunk_bytes"], "records": 4,
                               "approved": False}]  # fmt: skip
    one = home / "one.html"
    done = cli.run(
        "review", "show", f"{SESSION}/000000", "--html", "--spool", str(spool), "--out", str(one)
    )
    assert done.returncode == 0, done.stderr
    assert page_data(one)["scope"]["note"].endswith(
        "approved for upload. It is uploaded at the next upload round."
    )


def test_review_html_goes_with_list_and_show_only(cli: Cli, spool: Path) -> None:
    done = cli.run("review", "approve", "all", "--html", "--spool", str(spool))
    assert done.returncode == 2 and "--html goes with `review list` or `review show`" in done.stderr
    done = cli.run("review", "list", "--out", "x.html", "--spool", str(spool))
    assert done.returncode == 2 and "--out and --open go with --html" in done.stderr


def test_inspect_html_lists_every_session_with_a_link_to_its_replay(
    cli: Cli, spool: Path, home: Path
) -> None:
    write_session(spool, [[{"k": "start", "t": 0}]], session="20261128T090000Z-00000002")
    out = home / "inspect"
    done = cli.run("inspect", "--html", "--spool", str(spool), "--out", str(out))
    assert done.returncode == 0, done.stderr
    index = (out / "index.html").read_text()
    for session in (SESSION, "20261128T090000Z-00000002"):
        assert f'href="{session}.html"' in index
        assert page_data(out / f"{session}.html")["session"]["session"] == session
    assert "2 chunk(s) not yet uploaded" in index
    assert mode(out) == 0o700 and mode(out / "index.html") == 0o600


def test_a_session_whose_first_chunks_were_uploaded_says_so(
    cli: Cli, spool: Path, home: Path
) -> None:
    Spool(spool).delete_chunk(Spool(spool).sealed_chunks()[0])  # acknowledged and deleted
    out = home / "s.html"
    assert cli.run("replay", "--spool", str(spool), "--out", str(out)).returncode == 0
    data = page_data(out)
    assert data["warnings"] == [
        "chunk(s) 000000 are no longer on this computer (uploaded or removed)"
    ]
    assert [s["k"] for s in data["steps"]] == ["click", "end"]


def test_thumbnails_are_about_320_pixels_wide(tmp_path: Path) -> None:
    from PIL import Image

    from deskcorder.commands.replay import _thumbnail
    from tests.replay.helpers import image

    big = tmp_path / "big.webp"
    big.write_bytes(image("green", (1920, 1080)))
    with Image.open(io.BytesIO(_thumbnail(big))) as thumb:
        assert thumb.size == (320, 180) and thumb.format == "WEBP"
