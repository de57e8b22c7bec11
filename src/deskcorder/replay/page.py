"""The replay document -> one HTML page. Pure: a document and image references in, text out.

Safety by construction (docs/replay.md):

* the document goes into the page as JSON inside ``<script type="application/json">``
  with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, so no record string can end
  the element or start markup; the page's script shows every string with
  ``textContent``, never as markup;
* the page carries its own Content-Security-Policy (a ``<meta>`` element): no
  network (``default-src 'none'``), its one script and one style allowed by their
  sha256, images only from where this page keeps them. The collector sends the
  same policy as a header (:func:`content_security_policy`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from deskcorder import __version__

ImageMode = Literal["files", "inline", "none"]

_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_SHA = re.compile(r"^[0-9a-f]{64}$")
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def script_json(value: Any) -> str:
    """JSON that is safe as the text of a ``<script type="application/json">`` element."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_ESCAPES)


@functools.cache
def _asset(name: str) -> str:
    text = (resources.files("deskcorder.replay") / "static" / name).read_text(encoding="utf-8")
    if name != "replay.html" and re.search(r"</(script|style)", text, re.IGNORECASE):
        raise ValueError(f"{name} must not contain a closing script or style tag")
    return text


def _sha256_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


_IMG_SRC: dict[str, str] = {"files": "'self'", "inline": "data:", "none": "'none'"}


def content_security_policy(images: ImageMode, *, header: bool = False) -> str:
    """The page's policy: no network, its own script and style only, images as kept.

    ``header=True`` adds what only an HTTP header can say (``frame-ancestors``).
    """
    parts = [
        "default-src 'none'",
        f"script-src {_sha256_source(_asset('replay.js'))}",
        f"style-src {_sha256_source(_asset('replay.css'))}",
        f"img-src {_IMG_SRC[images]}",
        "base-uri 'none'",
        "form-action 'none'",
    ]
    if header:
        parts.append("frame-ancestors 'none'")
    return "; ".join(parts)


@dataclass(frozen=True)
class Images:
    """Where the page finds its screenshots.

    ``files``: ``urls`` maps a sha256 to a URL relative to the page (a folder
    beside it), ``thumbs`` to a thumbnail's (the screenshot sheet uses them).
    ``inline``: ``blobs`` yields ``(sha256, bytes)`` once each; the bytes go
    into the page (base64) and are decoded only when shown. ``none``: no images.
    """

    mode: ImageMode = "none"
    urls: Mapping[str, str] = field(default_factory=dict)
    blobs: Iterable[tuple[str, bytes]] = ()
    thumbs: Mapping[str, str] = field(default_factory=dict)  # files: small ones for the sheet


def _inline_images(blobs: Iterable[tuple[str, bytes]]) -> Iterator[str]:
    for sha, data in blobs:
        if not _SHA.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        yield f'<script type="text/plain" id="img-{sha}" data-bytes="{len(data)}">'
        yield base64.b64encode(data).decode("ascii")
        yield "</script>\n"


def render(doc: Mapping[str, Any], images: Images | None = None) -> Iterator[str]:
    """The page, piece by piece (inline images are streamed, one at a time)."""
    images = images or Images()
    if images.mode == "files":
        for sha, url in [*images.urls.items(), *images.thumbs.items()]:
            if not _SHA.match(sha):
                raise ValueError(f"not a sha256: {sha!r}")
            if url.startswith(("javascript:", "data:")) or "//" in url:
                raise ValueError(f"image URL must be relative to the page: {url!r}")
    title = html.escape(str(doc.get("title", "deskcorder replay")))
    files_note = " and in the folder of screenshots beside it" if images.mode == "files" else ""
    values = {
        "CSP": html.escape(content_security_policy(images.mode)),
        "GENERATOR": html.escape(f"deskcorder {__version__}"),
        "TITLE": title,
        "CSS": _asset("replay.css"),
        "JS": _asset("replay.js"),
        "DATA": script_json(doc),
        "IMAGES": script_json(
            {"mode": images.mode, "urls": dict(images.urls), "thumbs": dict(images.thumbs)}
        ),
        "FILES_NOTE": files_note,
    }
    template = _asset("replay.html")
    pos = 0
    for match in _PLACEHOLDER.finditer(template):
        yield template[pos : match.start()]
        name = match.group(1)
        if name == "INLINE_IMAGES":
            if images.mode == "inline":
                yield from _inline_images(images.blobs)
        else:
            yield values[name]
        pos = match.end()
    yield template[pos:]


def render_page(doc: Mapping[str, Any], images: Images | None = None) -> str:
    """The whole page as one string."""
    return "".join(render(doc, images))


@dataclass(frozen=True)
class Cell:
    """One cell of an index page: text, optionally a link (a relative URL)."""

    text: str
    href: str | None = None
    numeric: bool = False


def index_policy() -> str:
    """An index page has no script and no image at all."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'none'",
            f"style-src {_sha256_source(_asset('replay.css'))}",
            "img-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def render_index(
    title: str, intro: Iterable[str], columns: Iterable[str], rows: Iterable[Iterable[Cell]]
) -> str:
    """A static page of links (``inspect --html``, ``review --html``): no script, all escaped."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text = e(cell.text)
            if cell.href is not None:
                if cell.href.startswith(("javascript:", "data:")) or "//" in cell.href:
                    raise ValueError(f"link must be relative to the page: {cell.href!r}")
                text = f'<a href="{e(cell.href)}">{text}</a>'
            cls = ' class="num"' if cell.numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append('<tr><td class="muted">Nothing here.</td></tr>')
    paragraphs = "".join(f"<p>{e(p)}</p>" for p in intro)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{e(index_policy())}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{e(title)}</title>\n<style>{_asset('replay.css')}</style>\n</head><body>\n"
        f'<header class="top"><h1>{e(title)}</h1>{paragraphs}</header>\n'
        '<section class="windows-box"><table class="windows index">'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table>"
        "</section>\n</body></html>\n"
    )
