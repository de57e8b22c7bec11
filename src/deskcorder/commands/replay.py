"""``deskcorder replay``, ``review --html``, ``inspect --html``: replay pages on this machine.

Reads a session from the spool (``storage.reader``), has ``deskcorder.replay``
render it, and writes the page with its screenshots in a folder beside it.
Everything written is for the person at this computer: files are 0600, folders
0700, only in folders the user owns (never a folder another account controls,
such as a shared temp folder), and nothing here is ever uploaded (the
uploader only sends sealed chunks and blobs from the spool).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import secrets
import shlex
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskcorder.errors import DeskcorderError, FormatError, UsageError
from deskcorder.replay import ChunkFacts, Images, build_replay, images_of, render
from deskcorder.replay.model import StepSource
from deskcorder.replay.page import Cell, render_index
from deskcorder.storage.blobs import BlobStore, is_sha256
from deskcorder.storage.chunk import seq_of
from deskcorder.storage.reader import Session, list_sessions, read_session
from deskcorder.storage.spool import SealedChunk

log = logging.getLogger(__name__)

FILES_SUFFIX = ".files"  # page.html -> page.files/<sha>.<fmt>
_IMAGE_NAME = re.compile(r"^[0-9a-f]{64}(\.(webp|jpeg|png)|\.thumb\.webp)$")
THUMB_SUFFIX = ".thumb.webp"
THUMB_WIDTH = 320  # thumbnails for the screenshot sheet: at most about this wide
_EXT = {"webp": "webp", "jpeg": "jpeg", "png": "png"}


def default_out_dir() -> Path:
    """Where pages go without ``--out``: the user's own cache folder."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("deskcorder", appauthor=False)) / "replay"


def find_session(spool: Path, session: str | None) -> Session:
    """A session by id or folder; without one, the newest session in the spool."""
    if session:
        candidate = Path(session)
        if not candidate.exists():
            if "/" in session or session in (".", ".."):
                raise UsageError(f"{session}: no such session folder")
            candidate = spool / "sessions" / session
            if not candidate.exists():
                raise UsageError(
                    f"{session}: no such session in {spool} (see `deskcorder inspect`)"
                )
        return read_session(candidate)
    sessions = list_sessions(spool)
    if not sessions:
        raise DeskcorderError(f"{spool}: no sessions here (nothing has been recorded yet)")
    return sessions[-1]


# ---------------------------------------------------------------------------
# writing files only where the user alone decides
# ---------------------------------------------------------------------------


def _check_own_folder(folder: Path) -> None:
    """Refuse a folder that another account owns or that anyone may write into."""
    try:
        st = folder.lstat()
    except FileNotFoundError as exc:
        raise UsageError(f"{folder}: no such folder") from exc
    except OSError as exc:
        raise DeskcorderError(f"{folder}: cannot use: {exc.strerror}") from exc
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # Windows: profile folders are the user's; ACLs are not checked here
        return
    st = folder.stat()  # a symlink to a folder of the user's own is fine
    if st.st_uid != getuid():
        raise UsageError(
            f"{folder}: owned by another account; replay pages are written only in "
            "your own folders (choose --out in your home folder)"
        )
    if st.st_mode & 0o022:
        raise UsageError(
            f"{folder}: others may write into this folder; replay pages are written only "
            "in folders that only you can change (choose --out in your home folder)"
        )


def _ensure_private_dir(path: Path) -> None:
    if path.is_symlink():
        raise UsageError(f"{path}: is a symbolic link; refusing to write through it")
    path.mkdir(mode=0o700, parents=False, exist_ok=True)
    _check_own_folder(path)


def _write_private(path: Path, pieces: Iterable[str | bytes]) -> int:
    """Write ``path`` atomically with mode 0600 (temp file + rename); returns bytes written."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UsageError(f"{path}: exists and is not a regular file; refusing to replace it")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    size = 0
    try:
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for piece in pieces:
                data = piece.encode("utf-8") if isinstance(piece, str) else piece
                fh.write(data)
                size += len(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DeskcorderError(f"{path}: cannot write: {exc.strerror}") from exc
    return size


@dataclass(frozen=True)
class Written:
    page: Path
    page_bytes: int
    images: int
    image_bytes: int
    missing_images: int


@dataclass
class _Copied:
    urls: dict[str, str]
    thumbs: dict[str, str]
    count: int
    bytes: int


def _copy_images(blobs: BlobStore, folder: Path, wanted: Sequence[tuple[str, str]]) -> _Copied:
    """Copy the screenshots into ``folder``, each with a small thumbnail for the page's
    screenshot sheet (kept between runs: names are content addresses)."""
    copied = _Copied({}, {}, 0, 0)
    if not wanted and not folder.exists():
        return copied
    _ensure_private_dir(folder)
    keep: set[str] = set()
    need_thumbs: list[tuple[str, Path, Path]] = []
    for sha, fmt in wanted:
        if not is_sha256(sha) or fmt not in _EXT:
            continue
        src = blobs.path(sha)
        name = f"{sha}.{_EXT[fmt]}"
        dest = folder / name
        try:
            size = src.stat().st_size
        except OSError:
            continue  # uploaded and removed from this machine: the page says so
        if not (dest.is_file() and not dest.is_symlink() and dest.stat().st_size == size):
            try:
                data = src.read_bytes()
            except OSError:
                continue
            _write_private(dest, [data])
        keep.add(name)
        copied.count += 1
        copied.bytes += size
        copied.urls[sha] = f"{folder.name}/{name}"
        thumb = folder / f"{sha}{THUMB_SUFFIX}"
        keep.add(thumb.name)
        if thumb.is_file() and not thumb.is_symlink():
            copied.thumbs[sha] = f"{folder.name}/{thumb.name}"
        else:
            need_thumbs.append((sha, dest, thumb))
    for sha, thumb in _make_thumbnails(need_thumbs):
        copied.thumbs[sha] = f"{folder.name}/{thumb.name}"
    for old in folder.iterdir():  # screenshots of an earlier page with this name
        if _IMAGE_NAME.match(old.name) and old.name not in keep and not old.is_symlink():
            with contextlib.suppress(OSError):
                old.unlink()
    return copied


def _thumbnail(image: Path) -> bytes:
    from PIL import Image

    with Image.open(image) as img:
        img.load()
        factor = max(1, img.width // THUMB_WIDTH)
        small = img.reduce(factor) if factor > 1 else img
        out = io.BytesIO()
        small.convert("RGB").save(out, "WEBP", quality=60, method=0)
        return out.getvalue()


def _make_thumbnails(todo: Sequence[tuple[str, Path, Path]]) -> list[tuple[str, Path]]:
    """Thumbnails of the screenshots, in parallel (Pillow decodes without the GIL); none
    when Pillow is not installed (the sheet then shows the screenshots scaled down)."""
    if not todo or importlib.util.find_spec("PIL") is None:
        return []

    def one(item: tuple[str, Path, Path]) -> tuple[str, Path] | None:
        sha, image, thumb = item
        try:
            data = _thumbnail(image)
        except Exception as exc:  # a screenshot Pillow cannot read: the sheet uses the image
            log.warning("%s: no thumbnail: %s", image, exc)
            return None
        _write_private(thumb, [data])
        return sha, thumb

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return [done for done in pool.map(one, todo) if done is not None]


def _blob_sizes(blobs: BlobStore, shas: Iterable[str]) -> dict[str, int]:
    sizes = {}
    for sha in shas:
        with contextlib.suppress(OSError, ValueError):
            sizes[sha] = blobs.path(sha).stat().st_size
    return sizes


def session_document(
    session: Session,
    blobs: BlobStore,
    *,
    seqs: set[int] | None = None,
    scope: Mapping[str, Any] | None = None,
    approved: Mapping[int, bool] | None = None,
    steps: StepSource = "actions",
) -> dict[str, Any]:
    """The replay document of a session on this machine (or of chunks ``seqs`` of it)."""
    headers: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    lead_in: list[dict[str, Any]] = []
    chunks: list[ChunkFacts] = []
    warnings: list[str] = []
    expected = 0
    for path, decoded in session.chunks():
        seq = seq_of(path)
        if seqs is None and seq > expected:
            gone = ", ".join(f"{n:06d}" for n in range(expected, seq))
            warnings.append(f"chunk(s) {gone} are no longer on this computer (uploaded or removed)")
        expected = seq + 1
        if seqs is not None and seq not in seqs:
            if seqs and seq < min(seqs):
                lead_in.extend(decoded.records)
            continue
        headers.append(decoded.header)
        shown.extend(decoded.records)
        size = path.stat().st_size if path.exists() else 0
        chunks.append(
            ChunkFacts(
                seq=seq,
                bytes=size,
                records=len(decoded.records),
                approved=None if approved is None else approved.get(seq, False),
            )
        )
        if path.name.endswith(".part"):
            warnings.append(f"chunk {seq:06d} is still being written: shown up to its last flush")
        if decoded.error:
            warnings.append(f"chunk {seq:06d} is damaged: {decoded.error}")
    if not headers:
        raise FormatError(f"{session.path}: no readable chunk to show")
    if seqs is not None and lead_in == [] and seqs and min(seqs) > 0:
        warnings.append(
            "the chunks before this one are no longer on this machine: the window "
            "focused at its start is not known"
        )
    shas = {r["sha256"] for r in shown if r.get("k") == "shot" and isinstance(r.get("sha256"), str)}
    return build_replay(
        headers,
        shown,
        lead_in=lead_in,
        chunks=chunks,
        image_bytes=_blob_sizes(blobs, shas),
        scope=scope,
        steps=steps,
        warnings=warnings,
    )


def write_page(doc: Mapping[str, Any], blobs: BlobStore, out: Path) -> Written:
    """Write ``out`` (0600) and its screenshots in ``<out stem>.files/`` beside it."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"{out}: the replay page's name must end in .html")
    _check_own_folder(out.parent)
    folder = out.with_name(out.stem + FILES_SUFFIX)
    wanted = images_of(doc)
    copied = _copy_images(blobs, folder, wanted)
    size = _write_private(out, render(doc, Images("files", copied.urls, thumbs=copied.thumbs)))
    return Written(out, size, copied.count, copied.bytes, len(wanted) - copied.count)


def out_path(out: Path | None, name: str) -> Path:
    if out is not None:
        return out.expanduser().absolute()
    folder = default_out_dir()
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _ensure_private_dir(folder)
    return folder / f"{name}.html"


def replay_page(
    spool: Path, session: str | None, out: Path | None, write: Any, *, steps: StepSource = "actions"
) -> Path:
    """``deskcorder replay [SESSION] [--out FILE.html]``; returns the page written."""
    found = find_session(spool, session)
    target = out_path(out, found.id)
    blobs = BlobStore(spool / "blobs")
    written = write_page(session_document(found, blobs, steps=steps), blobs, target)
    write(_written_line(written))
    return written.page


def _written_line(w: Written) -> str:
    extra = f", {w.images} screenshot(s) in {w.page.stem}{FILES_SUFFIX}/" if w.images else ""
    if w.missing_images:
        extra += f"; {w.missing_images} screenshot(s) no longer on this machine"
    return f"replay written: {w.page} ({w.page_bytes:,} bytes{extra})"


# ---------------------------------------------------------------------------
# review --html: the chunks waiting for approval, one page each
# ---------------------------------------------------------------------------


def review_html(
    action: str, ref: str | None, spool: Path, out: Path | None, write: Any, *, spool_given: bool
) -> Path:
    """``deskcorder review [list|show REF] --html``: what a chunk holds, before approving it."""
    from deskcorder.commands.review import find
    from deskcorder.storage.spool import Spool

    spool_arg = f" --spool {shlex.quote(str(spool))}" if spool_given else ""
    if action not in ("list", "show"):
        raise UsageError(f"--html goes with `review list` or `review show`, not `review {action}`")
    if action == "show" and not ref:
        raise UsageError("review show --html needs a chunk: SESSION/SEQ, SESSION or all")
    if action == "list" or ref == "all":
        chunks = Spool(spool).sealed_chunks()
        return review_pages(spool, chunks, out, write, spool_arg=spool_arg, index=True)
    assert ref is not None
    return review_pages(spool, find(Spool(spool), ref), out, write, spool_arg=spool_arg)


def _review_scope(chunks: Sequence[SealedChunk], approved: bool, spool_arg: str) -> dict[str, Any]:
    session = chunks[0].session
    if len(chunks) == 1:
        ref = f"{session}/{chunks[0].seq:06d}"
        what = f"Chunk {chunks[0].seq:06d} of session {session}"
    else:
        ref = session
        what = f"{len(chunks)} chunks of session {session}"
    if approved:
        note = f"{what}: approved for upload. It is uploaded at the next upload round."
    else:
        note = (
            f"{what}: waiting for your approval. Nothing here is uploaded until you approve "
            "it; deleting it removes it from this computer for good."
        )
    return {
        "kind": "chunks",
        "note": note,
        "commands": [
            ["Approve", f"deskcorder review approve {ref}{spool_arg}"],
            ["Delete", f"deskcorder review delete {ref}{spool_arg}"],
        ],
    }


def review_pages(
    spool: Path,
    chunks: Sequence[SealedChunk],
    out: Path | None,
    write: Any,
    *,
    spool_arg: str = "",
    index: bool = False,
) -> Path:
    """Replay pages of sealed chunks waiting for review (``deskcorder review --html``).

    With ``index`` (``review --html`` without a chunk): one page per chunk and a
    ``review.html`` listing them; else one page of all ``chunks`` (one session).
    """
    from deskcorder.storage.approval import is_approved

    blobs = BlobStore(spool / "blobs")
    if not index:
        sessions = {c.session for c in chunks}
        if len(sessions) != 1:
            raise UsageError("review show --html shows one session: SESSION or SESSION/SEQ")
        session = read_session(spool / "sessions" / chunks[0].session)
        state = {c.seq: is_approved(c) for c in chunks}
        doc = session_document(
            session,
            blobs,
            seqs=set(state),
            scope=_review_scope(chunks, all(state.values()), spool_arg),
            approved=state,
        )
        name = chunks[0].session + (f"-{chunks[0].seq:06d}" if len(chunks) == 1 else "")
        written = write_page(doc, blobs, out_path(out, name))
        write(_written_line(written))
        return written.page
    folder = _out_folder(out)
    rows: list[list[Cell]] = []
    for chunk in chunks:
        approved = is_approved(chunk)
        session = read_session(spool / "sessions" / chunk.session)
        doc = session_document(
            session,
            blobs,
            seqs={chunk.seq},
            scope=_review_scope([chunk], approved, spool_arg),
            approved={chunk.seq: approved},
        )
        page = folder / f"{chunk.session}-{chunk.seq:06d}.html"
        write_page(doc, blobs, page)
        rows.append(_index_row(doc, page.name, f"{chunk.session}/{chunk.seq:06d}", approved))
    intro = [
        f"Spool {spool}: {len(chunks)} sealed chunk(s) on this computer.",
        "Open a chunk to see what it holds, then approve or delete it with the command "
        "shown on its page.",
    ]
    columns = ["Chunk", *_COLUMNS, "State"]
    target = folder / "review.html"
    size = _write_private(target, [render_index("Chunks waiting for review", intro, columns, rows)])
    write(f"review pages written: {target} ({size:,} bytes, {len(rows)} chunk page(s))")
    return target


_COLUMNS = ("Start (UTC)", "Duration", "Input events", "Screenshots", "Windows")


def _out_folder(out: Path | None) -> Path:
    """The folder for several pages: ``--out`` (created if its parent is the user's) or the
    default one."""
    folder = out.expanduser().absolute() if out is not None else default_out_dir()
    if out is None:
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    elif not folder.exists():
        _check_own_folder(folder.parent)
    _ensure_private_dir(folder)
    return folder


def _index_row(doc: Mapping[str, Any], href: str, label: str, approved: bool | None) -> list[Cell]:
    summary = doc["summary"]
    clock = doc["session"].get("clock")
    start = "?"
    if clock:
        from datetime import datetime, timezone

        unix_ms = clock["unix_ms"] + (doc["t0"] - clock["t"])
        start = datetime.fromtimestamp(unix_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    apps: dict[str, int] = {}
    for win in doc["windows"]:
        app = str(win.get("app") or win.get("process") or win.get("title") or "?")
        apps[app] = apps.get(app, 0) + int(win.get("focused_ms", 0))
    names = sorted(apps, key=lambda a: -apps[a])
    windows = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    state = "" if approved is None else ("approved" if approved else "waiting for approval")
    return [
        Cell(label, href),
        Cell(start),
        Cell(f"{summary['duration_ms'] / 1000:,.1f} s", numeric=True),
        Cell(f"{summary['events']:,}", numeric=True),
        Cell(f"{summary['screenshots']:,}", numeric=True),
        Cell(windows),
        Cell(state),
    ]


# ---------------------------------------------------------------------------
# inspect --html: every session still on this computer, each linking to its replay
# ---------------------------------------------------------------------------


def inspect_pages(spool: Path, out: Path | None, write: Any) -> Path:
    """``deskcorder inspect --html``: a replay page per session and ``index.html`` linking
    them; returns the index."""
    from deskcorder.storage.approval import is_approved
    from deskcorder.storage.spool import Spool

    folder = _out_folder(out)
    blobs = BlobStore(spool / "blobs")
    waiting: dict[str, list[bool]] = {}
    for chunk in Spool(spool).sealed_chunks():
        waiting.setdefault(chunk.session, []).append(is_approved(chunk))
    rows: list[list[Cell]] = []
    sessions = list_sessions(spool)
    for session in sessions:
        doc = session_document(session, blobs)
        page = folder / f"{session.id}.html"
        write_page(doc, blobs, page)
        sealed = waiting.get(session.id, [])
        upload = f"{len(sealed)} chunk(s) not yet uploaded" if sealed else "nothing waiting"
        if sealed and any(sealed):
            upload += f" ({sum(sealed)} approved)"
        if session.part_paths:
            upload += "; recording"
        row = _index_row(doc, page.name, session.id, None)
        row[-1] = Cell(upload)
        rows.append(row)
    intro = [
        f"Spool {spool}: {len(sessions)} session(s) still on this computer.",
        "Open a session to see its timeline, steps and screenshots.",
    ]
    columns = ["Session", *_COLUMNS, "Upload"]
    target = folder / "index.html"
    size = _write_private(
        target, [render_index("What deskcorder keeps on this computer", intro, columns, rows)]
    )
    write(f"inspect page written: {target} ({size:,} bytes, {len(rows)} session page(s))")
    return target
