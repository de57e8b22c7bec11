"""The page: data embedded safely, its policy matches its script and style, images as kept."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from deskcorder.replay import Images, build_replay, content_security_policy, render, render_page
from deskcorder.replay.page import Cell, render_index, script_json

HOSTILE = "</script><script>alert(1)</script><!-- \u2028\u2029 & <img src=x onerror=alert(2)>"


class _Parts(HTMLParser):
    """Elements as a browser's tokenizer sees them (script text is raw)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self.tags: list[str] = []
        self.meta_csp: str | None = None
        self._in: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.meta_csp = a.get("content")
        if tag in ("script", "style"):
            self._in = (tag, a)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._in is not None and tag == self._in[0]:
            text = "".join(self._text)
            if tag == "script":
                self.scripts.append((self._in[1], text))
            else:
                self.styles.append(text)
            self._in = None


def parse(page: str) -> _Parts:
    parts = _Parts()
    parts.feed(page)
    parts.close()
    return parts


def doc_with(title: str) -> dict[str, object]:
    win = {"id": 1, "title": title, "app": title}
    records = [
        {"k": "focus", "t": 0, "win": win},
        {"k": "text", "t": 1000, "text": title, "win": 1},
    ]
    return build_replay(
        [{"session": "s-1", "keystrokes": "full"}], records, title=title, steps="records"
    )


def sha_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_script_json_cannot_end_its_element() -> None:
    text = script_json({"t": HOSTILE})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"t": HOSTILE}


def test_hostile_strings_stay_data() -> None:
    page = render_page(doc_with(HOSTILE))
    parts = parse(page)
    # exactly the page's own scripts: the data, the image map, the code
    types = [attrs.get("type") for attrs, _ in parts.scripts]
    assert types == ["application/json", "application/json", None]
    data = json.loads(parts.scripts[0][1])
    assert data["title"] == HOSTILE and data["steps"][1]["text"] == HOSTILE
    # the same elements as a page of a harmless title: nothing of the record became markup
    assert parts.tags == parse(render_page(doc_with("harmless"))).tags
    # the <title> and <h1> carry it escaped
    assert page.count("&lt;/script&gt;&lt;script&gt;alert(1)") == 2


def test_the_policy_allows_exactly_the_page_script_and_style() -> None:
    page = render_page(doc_with("x"))
    parts = parse(page)
    csp = parts.meta_csp
    assert csp == content_security_policy("none")
    code = parts.scripts[-1][1]
    assert f"script-src {sha_source(code)};" in csp
    (style,) = parts.styles
    assert f"style-src {sha_source(style)};" in csp
    assert "default-src 'none'" in csp and "unsafe" not in csp
    assert "img-src 'none'" in csp
    assert "frame-ancestors" not in csp  # only meaningful in a header
    assert "frame-ancestors 'none'" in content_security_policy("inline", header=True)
    assert "img-src data:" in content_security_policy("inline")
    assert "img-src 'self'" in content_security_policy("files")


def test_files_mode_maps_shas_to_relative_urls_only() -> None:
    sha = "a" * 64
    thumbs = {sha: f"p.files/{sha}.thumb.webp"}
    page = render_page(doc_with("x"), Images("files", {sha: f"p.files/{sha}.webp"}, thumbs=thumbs))
    images = json.loads(parse(page).scripts[1][1])
    assert images == {"mode": "files", "urls": {sha: f"p.files/{sha}.webp"}, "thumbs": thumbs}
    with pytest.raises(ValueError, match="relative"):
        render_page(doc_with("x"), Images("files", {}, thumbs={sha: "https://x/t.webp"}))
    for bad in ("javascript:alert(1)", "https://evil.example/x.webp", "//evil/x"):
        with pytest.raises(ValueError, match="relative"):
            render_page(doc_with("x"), Images("files", {sha: bad}))
    with pytest.raises(ValueError, match="sha256"):
        render_page(doc_with("x"), Images("files", {"../x": "a.webp"}))


def test_inline_images_are_streamed_one_at_a_time() -> None:
    blobs_read: list[str] = []

    def blobs() -> object:
        for sha, data in (("a" * 64, b"RIFF1234WEBPxx"), ("b" * 64, b"\xff\xd8\xff")):
            blobs_read.append(sha)
            yield sha, data

    pieces = render(doc_with("x"), Images("inline", blobs=blobs()))  # type: ignore[arg-type]
    head = ""
    for piece in pieces:
        head += piece
        if 'id="img-' in piece:
            break
    assert blobs_read == ["a" * 64]  # the second blob is not read before it is needed
    page = head + "".join(pieces)
    parts = parse(page)
    stored = {a["id"]: text for a, text in parts.scripts if a.get("type") == "text/plain"}
    assert base64.b64decode(stored["img-" + "a" * 64]) == b"RIFF1234WEBPxx"
    assert base64.b64decode(stored["img-" + "b" * 64]) == b"\xff\xd8\xff"
    assert parts.meta_csp is not None and "img-src data:" in parts.meta_csp
    with pytest.raises(ValueError, match="sha256"):
        render_page(doc_with("x"), Images("inline", blobs=[("nope", b"")]))


def test_assets_cannot_close_their_element() -> None:
    page = render_page(doc_with("x"))
    parts = parse(page)
    assert len(re.findall(r"</script>", page)) == len(parts.scripts)


def test_index_page_escapes_everything_and_runs_no_script() -> None:
    page = render_index(
        HOSTILE,
        [HOSTILE],
        ["Session", HOSTILE],
        [[Cell(HOSTILE, "a.html"), Cell("3", numeric=True)]],
    )
    parts = parse(page)
    assert parts.scripts == [] and "img" not in parts.tags
    assert parts.meta_csp is not None and "script-src 'none'" in parts.meta_csp
    assert 'href="a.html"' in page and 'class="num"' in page
    with pytest.raises(ValueError, match="relative"):
        render_index("t", [], ["a"], [[Cell("x", "javascript:alert(1)")]])
