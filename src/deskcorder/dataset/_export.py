"""``deskcorder dataset build``: sessions -> one row per action, Parquet or JSON Lines.

Layout of an export (docs/dataset.md, "The export")::

    OUT/dataset_info.json                    schema, purpose, thresholds, policies, counts
    OUT/data/day=YYYY-MM-DD/part-I-of-N.parquet  rows of shard I of N whose episode began that day
    OUT/images/<sha[:2]>/<sha>.webp          observation and after images (copy or link)
    OUT/_shards/part-I-of-N.json             what each shard wrote (merged into dataset_info)
    LINEAGE/part-I-of-N.jsonl                episode id -> session, user, device (admin only)

Sessions are read one chunk at a time and rows are written in bounded batches,
so memory does not grow with the input.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from deskcorder import __version__
from deskcorder.dataset._actions import Action, Shot
from deskcorder.dataset._reduce import Reducer, Thresholds
from deskcorder.dataset._source import SessionSource, Source, SourceOpener, opener_for
from deskcorder.errors import DeskcorderError, UsageError
from deskcorder.events import K_CLOCK
from deskcorder.storage.reader import WallClock

DATASET_FORMAT = "deskcorder-dataset"
DATASET_VERSION = 1
LINEAGE_FORMAT = "deskcorder-lineage"
BATCH_ROWS = 2048
PURPOSES = ("training", "analysis")
FORMATS = ("parquet", "jsonl")
IMAGE_MODES = ("copy", "link", "none", "embed")
_EXT = {"webp": ".webp", "jpeg": ".jpg", "png": ".png"}

# (name, type, description); types: str, i32, i64, f64, bool, ts, bin, i32x4, strs, path
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("episode_id", "str", "episode: random per episode (training) or <session>/<n> (analysis)"),
    ("step", "i32", "index of the action in its episode, from 0"),
    (
        "kind",
        "str",
        "click, double_click, triple_click, right_click, middle_click, drag, "
        "scroll, type, hotkey, key, move",
    ),
    ("t_start_ms", "i64", "start of the action, ms after the episode's first action began"),
    ("t_end_ms", "i64", "end of the action, ms after the episode's first action began"),
    ("window_title", "str", "title of the focused window (scrubbed at capture)"),
    ("window_app", "str", "application of the focused window (WM_CLASS, bundle id, exe stem)"),
    ("x", "i32", "screen x of a click, scroll or hover; where a drag began"),
    ("y", "i32", "screen y"),
    ("nx", "f64", "x normalised to `screen` (0 left edge .. 1 right edge)"),
    ("ny", "f64", "y normalised to `screen`"),
    ("end_x", "i32", "where a drag ended"),
    ("end_y", "i32", "where a drag ended"),
    ("screen", "i32x4", "[left, top, width, height] nx/ny refer to: the observation's area"),
    ("button", "str", "mouse button of clicks and drags"),
    ("clicks", "i32", "1, 2 or 3 for clicks"),
    ("dx", "i32", "scroll: total horizontal wheel steps (> 0 right)"),
    ("dy", "i32", "scroll: total vertical wheel steps (> 0 up)"),
    ("count", "i32", "scroll: wheel events; type: keys pressed; key: presses"),
    ("text", "str", "type: scrubbed text (keystrokes=full) or key-class pattern (redacted)"),
    ("redacted", "bool", "text is a key-class pattern (L letter, D digit, P punct), not text"),
    ("keys", "strs", "hotkey: modifiers then key; key: the key"),
    ("path", "path", "drag/move: pointer positions {t_ms, x, y}"),
    ("code", "str", "PyAutoGUI code replaying the action"),
    ("observation", "str", "screen before the action: image path relative to the dataset"),
    ("observation_sha256", "str", "sha256 of the observation image"),
    ("observation_exact", "bool", "true: grabbed for this action just before it began"),
    ("observation_age_ms", "i64", "how long before the action began the observation was grabbed"),
    ("after", "str", "screenshot taken after the action began: image path"),
    ("after_sha256", "str", "sha256 of the after image"),
    ("element_role", "str", "clicks, drags: accessible role of the element pressed (el records)"),
    ("element_name", "str", "clicks, drags: its accessible name (scrubbed at capture)"),
)
EMBED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("observation_bytes", "bin", "the observation image's bytes (--images embed)"),
    ("after_bytes", "bin", "the after image's bytes (--images embed)"),
)
ANALYSIS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("session", "str", "session id"),
    ("episode", "i32", "episode number within the session"),
    ("user", "str", "user pseudonym (or name, identity=named), as the collector gave it"),
    ("device", "str", "device id"),
    ("machine", "str", "machine pseudonym, as the collector gave it"),
    ("t_start_utc", "ts", "wall-clock start of the action (UTC)"),
    ("window_id", "i64", "window id"),
    ("record_first", "i64", "first record of the action in the session"),
    ("record_last", "i64", "last record of the action in the session"),
)

PURPOSE_NOTE = {
    "training": "Rows carry no user or device identifier (a random id per episode) and no "
    "wall-clock time (times are relative to the episode start; the day partition only). "
    "For training agents, not for assessing the people recorded.",
    "analysis": "Rows carry user and device pseudonyms, session ids and wall-clock times "
    "(purpose analysis). Handle as personal data.",
}


def columns_for(purpose: str, images: str) -> list[tuple[str, str, str]]:
    cols = list(COLUMNS)
    if images == "embed":
        cols += EMBED_COLUMNS
    if purpose == "analysis":
        cols += ANALYSIS_COLUMNS
    return cols


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    fmt: str = "parquet"
    since: _dt.date | None = None
    shard: tuple[int, int] = (0, 1)
    images: str = "copy"
    purpose: str = "training"
    thresholds: Thresholds = field(default_factory=Thresholds)
    lineage: Path | None = None  # default: <out>.lineage/

    def lineage_dir(self) -> Path:
        return self.lineage or self.out.with_name(self.out.name + ".lineage")

    def shard_name(self) -> str:
        return f"part-{self.shard[0]}-of-{self.shard[1]}"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def parse_since(text: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a date YYYY-MM-DD") from None


def in_shard(session_id: str, shard: tuple[int, int]) -> bool:
    i, n = shard
    return int(hashlib.sha256(session_id.encode()).hexdigest()[:8], 16) % n == i


# ---------------------------------------------------------------------------
# output files
# ---------------------------------------------------------------------------


def _arrow_schema(cols: list[tuple[str, str, str]]) -> Any:
    import pyarrow as pa

    types = {
        "str": pa.string(),
        "i32": pa.int32(),
        "i64": pa.int64(),
        "f64": pa.float64(),
        "bool": pa.bool_(),
        "ts": pa.timestamp("ms", tz="UTC"),
        "bin": pa.binary(),
        "i32x4": pa.list_(pa.int32()),
        "strs": pa.list_(pa.string()),
        "path": pa.list_(pa.struct([("t_ms", pa.int64()), ("x", pa.int32()), ("y", pa.int32())])),
    }
    return pa.schema(
        [pa.field(name, types[kind], metadata={"description": desc}) for name, kind, desc in cols]
    )


def need_pyarrow() -> None:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise DeskcorderError(
            "Parquet needs pyarrow: pip install 'deskcorder[dataset]' (or use --format jsonl)"
        ) from exc


class _PartWriter:
    """Rows of one day partition of one shard: a temp file renamed into place at close."""

    def __init__(self, final: Path, fmt: str, schema: Any) -> None:
        self.final = final
        self.tmp = final.with_name(final.name + ".tmp")
        final.parent.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.schema = schema
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._pq: Any = None
        self._fh: IO[str] | None = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        else:
            self._fh = open(self.tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        if self._pq is not None:
            import pyarrow as pa

            self._pq.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        else:
            assert self._fh is not None
            for row in rows:
                self._fh.write(json.dumps(_jsonable(row), ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.flush()
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._pq is not None:
                self._pq.close()
            if self._fh is not None:
                self._fh.close()
        self.tmp.unlink(missing_ok=True)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, bytes):
            import base64

            value = base64.b64encode(value).decode()
        elif isinstance(value, _dt.datetime):
            value = value.isoformat().replace("+00:00", "Z")
        out[key] = value
    return out


class _Images:
    """Observation and after images beside the rows (copy, link, none or embed)."""

    def __init__(self, out: Path, mode: str, source: Source) -> None:
        self.root = out / "images"
        self.mode = mode
        self.source = source
        self.placed: set[str] = set()
        self.missing = 0

    def put(self, shot: Shot | None) -> tuple[str | None, bytes | None]:
        """The image's path in the dataset or its bytes (embed); one image read at a time."""
        if shot is None:
            return None, None
        if self.mode in ("none", "embed"):
            data = self.source.read_blob(shot.sha256) if self.mode == "embed" else None
            if data is None and not (self.mode == "none" and self.source.has_blob(shot.sha256)):
                self.missing += 1
            return None, data
        rel = f"images/{shot.sha256[:2]}/{shot.sha256}{_EXT.get(shot.fmt, '')}"
        if shot.sha256 in self.placed:
            return rel, None
        dest = self.root / shot.sha256[:2] / (shot.sha256 + _EXT.get(shot.fmt, ""))
        if not dest.exists() and not self._place(shot.sha256, dest):
            self.missing += 1
            return None, None
        self.placed.add(shot.sha256)
        return rel, None

    def _place(self, sha: str, dest: Path) -> bool:
        """Copy (or link) the blob to ``dest``; False when the source does not have it."""
        src = self.source.blob_path(sha)
        data = None if src is not None else self.source.read_blob(sha)
        if src is None and (data is None or self.mode == "link"):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        if src is None:
            assert data is not None
            tmp.write_bytes(data)
        elif self.mode == "link":
            try:
                os.link(src, tmp)
            except OSError:  # another file system: a symbolic link
                os.symlink(src.resolve(), tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return True


# ---------------------------------------------------------------------------
# one shard
# ---------------------------------------------------------------------------


@dataclass
class _Episode:
    id: str
    number: int
    day: str
    t0: int
    step: int = 0
    shas: set[str] = field(default_factory=set)


@dataclass
class ShardResult:
    name: str
    sessions: int = 0
    episodes: int = 0
    actions: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    images: int = 0
    missing_images: int = 0
    files: list[str] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sessions": self.sessions,
            "episodes": self.episodes,
            "actions": self.actions,
            "kinds": dict(sorted(self.kinds.items())),
            "images": self.images,
            "missing_images": self.missing_images,
            "files": sorted(self.files),
            "policies": self.policies,
        }


def _policy_of(header: dict[str, Any]) -> dict[str, Any]:
    return {
        "policy_digest": header.get("policy_digest"),
        "keystrokes": header.get("keystrokes"),
        "mouse_move_hz": header.get("mouse_move_hz"),
        "streams": header.get("streams"),
        "pre_action": bool(header.get("pre_action", False)),
        "agent": header.get("agent"),
        "format_version": header.get("format_version"),
    }


class ShardBuilder:
    def __init__(
        self,
        source: Source,
        opts: BuildOptions,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.source = source
        self.opts = opts
        self.cols = columns_for(opts.purpose, opts.images)
        self.schema = _arrow_schema(self.cols) if opts.fmt == "parquet" else None
        self.images = _Images(opts.out, opts.images, source)
        self.writers: dict[str, _PartWriter] = {}
        self.result = ShardResult(opts.shard_name())
        self.progress = progress
        self._lineage_fh: IO[str] | None = None
        self._wall = WallClock()
        # the current session's pseudonyms: the collector's index, else the chunk header
        self._ids: dict[str, Any] = {}
        self._since_ns = (
            None
            if opts.since is None
            else int(
                _dt.datetime.combine(opts.since, _dt.time(), _dt.timezone.utc).timestamp() * 1e9
            )
        )

    def run(self) -> ShardResult:
        opts = self.opts
        name = opts.shard_name()
        suffix = ".parquet" if opts.fmt == "parquet" else ".jsonl"
        if any(opts.out.glob(f"data/day=*/{name}{suffix}")):
            raise UsageError(
                f"{opts.out}: already holds shard {opts.shard[0]}/{opts.shard[1]}; remove it or "
                "choose another --out"
            )
        lineage_dir = opts.lineage_dir()
        lineage_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lineage_tmp = lineage_dir / f".{name}.jsonl.tmp"
        fd = os.open(lineage_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._lineage_fh = os.fdopen(fd, "w", encoding="utf-8")
        sessions = [s for s in self.source.sessions() if in_shard(s.id, opts.shard)]
        try:
            for n, session in enumerate(sessions):
                self._session(session)
                if self.progress is not None:
                    self.progress(n + 1, len(sessions))
            for writer in self.writers.values():
                writer.close()
        except BaseException:
            for writer in self.writers.values():
                writer.abort()
            self._lineage_fh.close()
            lineage_tmp.unlink(missing_ok=True)
            raise
        self._lineage_fh.flush()
        os.fsync(self._lineage_fh.fileno())
        self._lineage_fh.close()
        os.replace(lineage_tmp, lineage_dir / f"{name}.jsonl")
        res = self.result
        res.sessions = len(sessions)
        res.images = len(self.images.placed)
        res.missing_images = self.images.missing
        res.files = [str(w.final.relative_to(opts.out)) for w in self.writers.values()]
        return res

    def _session(self, session: SessionSource) -> None:
        reducer = Reducer(self.opts.thresholds)
        out = reducer.out
        header: dict[str, Any] | None = None
        ep: _Episode | None = None
        self._wall = WallClock()  # the clock anchor in force (headers, `clock` records)
        for decoded in session.chunks():
            reducer.header(decoded.header)
            self._wall.see(decoded.header)
            if header is None:
                header = decoded.header
                self._ids = {
                    key: getattr(session, key) or header.get(key)
                    for key in ("user", "machine", "device")
                }
                policy = _policy_of(header)
                if policy not in self.result.policies:
                    self.result.policies.append(policy)
            for record in decoded.records:
                if record.get("k") == K_CLOCK:
                    self._wall.see(record)
                reducer.feed(record)
                if out:
                    for action in out:
                        ep = self._action(session.id, header, ep, action)
                    out.clear()
        reducer.finish()
        if header is not None:
            for action in out:
                ep = self._action(session.id, header, ep, action)
        out.clear()
        self._end_episode(session.id, header, ep)

    def _wall_ns(self, header: dict[str, Any], t: int) -> int:
        wall = self._wall.unix_ns(t)
        if wall is not None:
            return wall
        clock = header.get("clock") or {}
        return int(clock.get("unix_ns", 0)) + (t - int(clock.get("t", 0))) * 1000

    def _action(
        self, session: str, header: dict[str, Any], ep: _Episode | None, a: Action
    ) -> _Episode | None:
        if ep is None or ep.number != a.episode:
            self._end_episode(session, header, ep)
            wall = self._wall_ns(header, a.t_start)
            day = _dt.datetime.fromtimestamp(wall / 1e9, _dt.timezone.utc).date().isoformat()
            ep_id = (
                secrets.token_hex(8)
                if self.opts.purpose == "training"
                else f"{session}/{a.episode}"
            )
            ep = _Episode(ep_id, a.episode, day, a.t_start)
            ep.step = -1 if self._since_ns is not None and wall < self._since_ns else 0
        if ep.step < 0:
            return ep  # the episode began before --since
        row = self._row(session, header, ep, a)
        writer = self.writers.get(ep.day)
        if writer is None:
            suffix = ".parquet" if self.opts.fmt == "parquet" else ".jsonl"
            final = self.opts.out / "data" / f"day={ep.day}" / f"{self.opts.shard_name()}{suffix}"
            writer = self.writers[ep.day] = _PartWriter(final, self.opts.fmt, self.schema)
        writer.add(row)
        ep.step += 1
        self.result.actions += 1
        self.result.kinds[a.kind] += 1
        return ep

    def _end_episode(
        self, session: str, header: dict[str, Any] | None, ep: _Episode | None
    ) -> None:
        if ep is None or ep.step <= 0 or header is None:
            return
        self.result.episodes += 1
        assert self._lineage_fh is not None
        entry = {
            "format": LINEAGE_FORMAT,
            "episode_id": ep.id,
            "session": session,
            "episode": ep.number,
            "user": self._ids["user"],
            "machine": self._ids["machine"],
            "device": self._ids["device"],
            "file": f"data/day={ep.day}/{self.opts.shard_name()}"
            + (".parquet" if self.opts.fmt == "parquet" else ".jsonl"),
            "rows": ep.step,
            "images": sorted(ep.shas),
        }
        self._lineage_fh.write(json.dumps(entry) + "\n")

    def _row(self, session: str, header: dict[str, Any], ep: _Episode, a: Action) -> dict[str, Any]:
        obs_path, obs_bytes = self.images.put(a.observation)
        after_path, after_bytes = self.images.put(a.after)
        for shot in (a.observation, a.after):
            if shot is not None:
                ep.shas.add(shot.sha256)
        t0 = ep.t0
        row: dict[str, Any] = {
            "episode_id": ep.id,
            "step": ep.step,
            "kind": a.kind,
            "t_start_ms": (a.t_start - t0) // 1000,
            "t_end_ms": (a.t_end - t0) // 1000,
            "window_title": a.window.title if a.window else None,
            "window_app": a.window.app if a.window else None,
            "x": a.x,
            "y": a.y,
            "nx": a.nx,
            "ny": a.ny,
            "end_x": a.end_x,
            "end_y": a.end_y,
            "screen": list(a.screen) if a.screen else None,
            "button": a.button,
            "clicks": a.clicks,
            "dx": a.dx,
            "dy": a.dy,
            "count": a.count,
            "text": a.text,
            "redacted": a.redacted,
            "keys": list(a.keys),
            "path": [{"t_ms": (t - t0) // 1000, "x": x, "y": y} for t, x, y in a.path],
            "code": a.code,
            "observation": obs_path,
            "observation_sha256": a.observation.sha256 if a.observation else None,
            "observation_exact": a.observation.exact if a.observation else None,
            "observation_age_ms": None
            if a.observation_age_us is None
            else a.observation_age_us // 1000,
            "after": after_path,
            "after_sha256": a.after.sha256 if a.after else None,
            "element_role": a.element.role if a.element else None,
            "element_name": a.element.name if a.element else None,
        }
        if self.opts.images == "embed":
            row["observation_bytes"] = obs_bytes
            row["after_bytes"] = after_bytes
        if self.opts.purpose == "analysis":
            row.update(
                {
                    "session": session,
                    "episode": a.episode,
                    "user": self._ids["user"],
                    "device": self._ids["device"],
                    "machine": self._ids["machine"],
                    "t_start_utc": _dt.datetime.fromtimestamp(
                        self._wall_ns(header, a.t_start) // 1_000_000 / 1000, _dt.timezone.utc
                    ),
                    "window_id": a.window.id if a.window else None,
                    "record_first": a.records[0],
                    "record_last": a.records[1],
                }
            )
        return row


# ---------------------------------------------------------------------------
# dataset_info.json
# ---------------------------------------------------------------------------


def write_info(out: Path, opts: BuildOptions) -> dict[str, Any]:
    """Merge every shard's summary into ``dataset_info.json`` (atomic; safe to repeat)."""
    shards_dir = out / "_shards"
    while True:
        names = sorted(p.name for p in shards_dir.glob("*.json"))
        shards = [json.loads((shards_dir / n).read_text()) for n in names]
        kinds: Counter[str] = Counter()
        policies: list[dict[str, Any]] = []
        for s in shards:
            kinds.update(s["kinds"])
            for p in s["policies"]:
                if p not in policies:
                    policies.append(p)
        info = {
            "format": DATASET_FORMAT,
            "format_version": DATASET_VERSION,
            "created_by": f"deskcorder/{__version__}",
            "purpose": opts.purpose,
            "purpose_note": PURPOSE_NOTE[opts.purpose],
            "data_format": opts.fmt,
            "images": opts.images,
            "thresholds": asdict(opts.thresholds),
            "partitioning": "hive: data/day=YYYY-MM-DD/ (UTC day the episode began)",
            "columns": [
                {"name": n, "type": t, "description": d}
                for n, t, d in columns_for(opts.purpose, opts.images)
            ],
            "counts": {
                "episodes": sum(s["episodes"] for s in shards),
                "actions": sum(s["actions"] for s in shards),
                "kinds": dict(sorted(kinds.items())),
                "images": len(list((out / "images").glob("*/*"))),
                "missing_images": sum(s["missing_images"] for s in shards),
            },
            "policies": policies,
            "shards": [s["name"] for s in shards],
        }
        tmp = out / ".dataset_info.json.tmp"
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out / "dataset_info.json")
        # a shard that finished meanwhile merges again itself; re-check ours
        if sorted(p.name for p in shards_dir.glob("*.json")) == names:
            return info


def _write_shard_summary(out: Path, result: ShardResult) -> None:
    shards_dir = out / "_shards"
    shards_dir.mkdir(exist_ok=True)
    tmp = shards_dir / f".{result.name}.tmp"
    tmp.write_text(json.dumps(result.as_json(), indent=1) + "\n")
    os.replace(tmp, shards_dir / f"{result.name}.json")


def _run_shard(
    source: Source, opts: BuildOptions, progress: Callable[[int, int], None] | None = None
) -> ShardResult:
    result = ShardBuilder(source, opts, progress).run()
    _write_shard_summary(opts.out, result)
    return result


def _build_shard(opener: SourceOpener, opts: BuildOptions) -> ShardResult:
    """One ``--jobs`` worker: its own source (opened again here), one shard."""
    source = opener()
    try:
        return _run_shard(source, opts)
    finally:
        source.close()


def _check_out(out: Path, opts: BuildOptions) -> None:
    info_path = out / "dataset_info.json"
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{info_path}: unreadable ({exc}); choose another --out") from exc
        for key, want in (("purpose", opts.purpose), ("data_format", opts.fmt)):
            if info.get(key) != want:
                raise UsageError(
                    f"{out}: holds a dataset with {key} {info.get(key)!r}, not {want!r}; "
                    "choose another --out"
                )
    elif out.exists() and any(out.iterdir()) and not (out / "_shards").is_dir():
        raise UsageError(f"{out}: exists and is not a deskcorder dataset; choose another --out")


def build(
    src: str | os.PathLike[str] | SourceOpener,
    opts: BuildOptions,
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Export the sessions at ``src`` (shard ``opts.shard``); returns dataset_info.

    ``src`` is a spool or session folder, or a :data:`SourceOpener` (a collector's
    data: ``deskcorder.commands.dataset.source_opener``); with ``jobs`` > 1 each
    process opens it again (so the opener must pickle).
    """
    if opts.fmt == "parquet":
        need_pyarrow()
    opener = opener_for(src)
    source = opener()  # a clear error for a bad --from before any output
    try:
        if opts.images == "link" and not source.local_files:
            raise UsageError(
                f"--images link: {source.where} is not on this machine; use copy, embed or none"
            )
        _check_out(opts.out, opts)
        opts.out.mkdir(parents=True, exist_ok=True)
        if jobs <= 1:
            _run_shard(source, opts, progress)
    finally:
        source.close()  # before any worker starts: nothing open is shared with it
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        i, n = opts.shard
        subs = [
            BuildOptions(**{**opts.__dict__, "shard": (i + n * j, n * jobs)}) for j in range(jobs)
        ]
        # spawn everywhere (as on macOS and Windows): a worker starts clean, without the
        # parent's threads, connections or object-store runtime
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_build_shard, opener, sub) for sub in subs]
            for done, fut in enumerate(futures):
                fut.result()
                if progress is not None:
                    progress(done + 1, len(futures))
    return write_info(opts.out, opts)


def terminal_progress(stream: IO[str] = sys.stderr) -> Callable[[int, int], None] | None:
    """A one-line progress display on a terminal; None (quiet) otherwise."""
    if not stream.isatty():
        return None
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} sessions "
            f"{time.monotonic() - started:.0f}s"
        )
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


def iter_rows(out: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Rows of an export in file order (day, then shard); bytes columns left out."""
    files = sorted(out.glob("data/day=*/part-*.parquet")) + sorted(
        out.glob("data/day=*/part-*.jsonl")
    )
    n = 0
    for path in files:
        if path.suffix == ".parquet":
            need_pyarrow()
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            keep = [c for c in table.column_names if not c.endswith("_bytes")]
            rows: Iterator[dict[str, Any]] = iter(table.select(keep).to_pylist())
        else:
            rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
        for row in rows:
            row.pop("observation_bytes", None)
            row.pop("after_bytes", None)
            yield {"day": path.parent.name.split("=", 1)[1], **row}
            n += 1
            if limit is not None and n >= limit:
                return
