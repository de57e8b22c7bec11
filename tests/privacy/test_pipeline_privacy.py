"""Every privacy control through the real pipeline into a real spool.

For each control, a card number, an e-mail address, a password and an API
token are typed; the literal strings must not appear anywhere in the
decompressed bytes of every file in the spool, and what policy allows must be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deskcorder.capture.pipeline import Pipeline
from deskcorder.events import RAW_CONTROL, RAW_FOCUS, RAW_KEY, RAW_TITLE, WindowInfo
from tests.core.helpers import make_policy, ms, run_pipeline
from tests.privacy.helpers import SECRETS, InstantField, assert_absent, spool_bytes

EDITOR = WindowInfo(id=1, title="notes.txt - Editor", app="editor", process="editor")
VAULT = WindowInfo(id=2, title="Vault - KeePassXC", app="KeePassXC", process="keepassxc")
INCOGNITO = WindowInfo(id=3, title="Bank - Chromium (Incognito)", app="chromium")
LOGIN = WindowInfo(id=4, title="Sign in - Mail", app="firefox")
DENIED = WindowInfo(id=5, title="HR portal", app="hrtool", process="hrtool")
FULL = {"keystrokes": "full"}


def typing(text: str, start_ms: float) -> list[tuple[Any, ...]]:
    raws: list[tuple[Any, ...]] = []
    t = start_ms
    for ch in text:
        name, char = ("space", None) if ch == " " else (None, ch)
        raws.append((RAW_KEY, ms(t), True, char, name, ord(ch)))
        raws.append((RAW_KEY, ms(t + 0.3), False, char, name, ord(ch)))
        t += 1
    return raws


def enter(at: float) -> list[tuple[Any, ...]]:
    return [
        (RAW_KEY, ms(at), True, None, "enter", 0xFF0D),
        (RAW_KEY, ms(at + 0.3), False, None, "enter", 0xFF0D),
    ]


def sensitive_typing(start: float) -> list[tuple[Any, ...]]:
    """Card, e-mail and token typed as text; the password typed into a password field."""
    raws = typing(f"pay with {SECRETS['card']} please", start) + enter(start + 60)
    raws += typing(f"write to {SECRETS['email']} today", start + 70) + enter(start + 130)
    raws += typing(f"export GH={SECRETS['token']}", start + 140) + enter(start + 220)
    raws += [(RAW_CONTROL, ms(start + 225), "secure_field", True)]
    raws += typing(SECRETS["password"], start + 230) + enter(start + 260)
    raws += [(RAW_CONTROL, ms(start + 265), "secure_field", False)]
    return raws


def run(tmp: Path, raws: list[tuple[Any, ...]], **sections: dict[str, Any]) -> tuple[
    list[dict[str, Any]], bytes
]:  # fmt: skip
    field = InstantField(False)

    def setup(p: Pipeline) -> None:
        p.key_filter.field = field
        original = p._control

        def control(t: int, command: str, arg: Any) -> None:
            if command == "secure_field":  # test-only: the focused field's kind changes
                field.set(bool(arg))
                return
            original(t, command, arg)

        p._control = control  # type: ignore[method-assign]

    policy = make_policy(**{"capture": FULL, **sections})
    records = run_pipeline(tmp, raws, policy, setup=setup)
    return records, spool_bytes(tmp / "spool")


def test_allowed_window_keeps_text_but_never_the_secrets(tmp_path: Path) -> None:
    records, blob = run(tmp_path, [(RAW_FOCUS, ms(1), EDITOR), *sensitive_typing(10)])
    assert_absent(blob, *SECRETS.values())
    texts = [r["text"] for r in records if r["k"] == "text"]
    assert texts == [
        "pay with [CARD] please",
        "write to [EMAIL] today",
        "export GH=[SECRET]",
        "[SECURE]",
    ]
    assert b"notes.txt - Editor" in blob  # allowed window context is kept
    from deskcorder.events import validate_record

    for record in records:
        validate_record(record)  # text and key records follow the schema
    times = [r["t"] for r in records]
    assert times == sorted(times)  # text records keep the file in time order


def test_excluded_app_yields_only_a_marker(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), VAULT), *sensitive_typing(10), (RAW_FOCUS, ms(400), EDITOR)]
    raws += typing("ok", 410)
    records, blob = run(tmp_path, raws)
    assert_absent(blob, *SECRETS.values(), "Vault", "KeePassXC", "keepassxc")
    kinds = [r["k"] for r in records]
    e = kinds.index("excl")
    assert records[e]["rule"] == "password_manager"
    assert kinds[e + 1] == "focus"  # nothing recorded while the vault had focus
    assert [r["text"] for r in records if r["k"] == "text"] == ["ok"]


def test_policy_denylist_and_allowlist(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), DENIED), *sensitive_typing(10)]
    records, blob = run(tmp_path / "deny", raws, exclusions={"apps": ["hrtool"]})
    assert_absent(blob, *SECRETS.values(), "HR portal")
    assert [r["rule"] for r in records if r["k"] == "excl"] == ["app"]
    records, blob = run(tmp_path / "allow", raws, exclusions={"allow_apps": ["editor"]})
    assert_absent(blob, *SECRETS.values(), "HR portal")
    assert [r["rule"] for r in records if r["k"] == "excl"] == ["not_allowlisted"]


def test_private_browsing_title_and_title_change(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), INCOGNITO), *sensitive_typing(10)]
    records, blob = run(tmp_path / "a", raws)
    assert_absent(blob, *SECRETS.values(), "Bank")
    assert [r["rule"] for r in records if r["k"] == "excl"] == ["private_browsing"]
    # a normal window whose title turns private mid-way
    browser = WindowInfo(id=6, title="Docs - Chromium", app="chromium")
    raws = [(RAW_FOCUS, ms(1), browser), *typing("fine", 2), *enter(8)]
    raws += [(RAW_TITLE, ms(9), 6, "Bank - Chromium (Incognito)"), *sensitive_typing(10)]
    records, blob = run(tmp_path / "b", raws)
    assert_absent(blob, *SECRETS.values(), "Bank")
    assert [r["text"] for r in records if r["k"] == "text"] == ["fine"]
    assert records[-2]["k"] == "excl"


def test_sign_in_title_is_secure_input(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), LOGIN), *typing(SECRETS["password"], 5), *enter(40)]
    records, blob = run(tmp_path, raws)
    assert_absent(blob, SECRETS["password"])
    assert [r["text"] for r in records if r["k"] == "text"] == ["[SECURE]"]
    assert not any("cls" in r for r in records)


def test_paused_writes_only_markers(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), EDITOR), *typing("before", 2), *enter(9)]
    raws += [(RAW_CONTROL, ms(10), "pause", float("inf")), *sensitive_typing(11)]
    raws += [(RAW_CONTROL, ms(300), "resume", None), *typing("after", 301), *enter(310)]
    records, blob = run(tmp_path, raws)
    assert_absent(blob, *SECRETS.values())
    kinds = [r["k"] for r in records]
    p, r = kinds.index("pause"), kinds.index("resume")
    assert records[p] == {"k": "pause", "t": 10_000, "src": "user"}  # no reason field
    assert kinds[p + 1 : r] == []
    assert [x["text"] for x in records if x["k"] == "text"] == ["before", "after"]


def test_out_of_schedule_records_nothing(tmp_path: Path) -> None:
    # no span on any day: always outside work hours
    raws = [(RAW_FOCUS, ms(1), EDITOR), *sensitive_typing(10)]
    records, blob = run(tmp_path, raws, schedule={"enabled": True, "hours": {}})
    assert_absent(blob, *SECRETS.values(), "notes.txt")
    assert [r["k"] for r in records] == ["start", "pause", "end"]
    assert records[1]["src"] == "schedule"


def test_consent_required_records_nothing_until_accepted(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), EDITOR), *sensitive_typing(10)]
    records, blob = run(tmp_path, raws, notice={"require_ack": True})
    assert_absent(blob, *SECRETS.values(), "notes.txt")
    assert [r["k"] for r in records] == ["start", "pause", "end"]
    assert records[1]["src"] == "consent"


def test_titles_are_scrubbed_in_every_mode(tmp_path: Path) -> None:
    win = WindowInfo(id=7, title=f"Inbox ({SECRETS['email']}) - Mail", app="mail")
    for mode in ("full", "redacted", "shortcuts", "off"):
        raws = [(RAW_FOCUS, ms(1), win), (RAW_TITLE, ms(2), 7, f"Card {SECRETS['card']}")]
        _records, blob = run(tmp_path / mode, raws, capture={"keystrokes": mode})
        assert_absent(blob, SECRETS["email"], SECRETS["card"])
        assert b"Inbox ([EMAIL]) - Mail" in blob and b"Card [CARD]" in blob


def test_redacted_mode_has_no_text_and_no_characters(tmp_path: Path) -> None:
    raws = [(RAW_FOCUS, ms(1), EDITOR), *sensitive_typing(10)]
    records, blob = run(tmp_path, raws, capture={"keystrokes": "redacted"})
    assert_absent(blob, *SECRETS.values())
    assert not any(r["k"] == "text" for r in records)
    assert any(r.get("cls") == "digit" for r in records)


def test_a_mouse_press_ends_the_typed_text_so_far(tmp_path: Path) -> None:
    """A click may move the caret: text before and after it are separate text records, and
    the dataset reducer makes them two type actions around the click."""
    from deskcorder.dataset import reduce_records
    from deskcorder.events import RAW_BUTTON

    raws = [(RAW_FOCUS, ms(1), EDITOR), *typing("abc", 10)]
    raws += [(RAW_BUTTON, ms(20), 5, 5, "left", True), (RAW_BUTTON, ms(25), 5, 5, "left", False)]
    raws += typing("def", 30)
    records, _ = run(tmp_path, raws, capture={**FULL, "mouse": False})
    kinds = [r["k"] for r in records if r["k"] in ("text", "bd")]
    assert kinds == ["text", "text"]  # no bd (mouse off), yet the press split the text
    assert [r["text"] for r in records if r["k"] == "text"] == ["abc", "def"]
    records, _ = run(tmp_path / "mouse", raws)
    actions = list(reduce_records(records, header={"keystrokes": "full"}))
    assert [(a.kind, a.text) for a in actions] == [
        ("type", "abc"),
        ("click", None),
        ("type", "def"),
    ]
