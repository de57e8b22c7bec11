"""Each detector: true positives replaced by their placeholder, look-alikes kept."""

from __future__ import annotations

import pytest

from deskcorder.capture.scrub import iban_ok, looks_random, luhn_ok, scrub

TRUE_POSITIVES = [
    ("mail jane.doe@example.com now", "mail [EMAIL] now"),
    ("a.b+tag@sub.example.co.uk", "[EMAIL]"),
    ("card 4111 1111 1111 1111 exp", "card [CARD] exp"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("amex 378282246310005.", "amex [CARD]."),
    ("iban DE89 3704 0044 0532 0130 00 thanks", "iban [IBAN] thanks"),
    ("GB82WEST12345698765432", "[IBAN]"),
    ("fr FR1420041010050500013M02606", "fr [IBAN]"),
    ("ssn 123-45-6789.", "ssn [SSN]."),
    ("ssn 123 45 6789", "ssn [SSN]"),
    ("host 192.168.1.20:8080", "host [IP]:8080"),
    ("v6 2001:db8::1 and ::1", "v6 [IP] and [IP]"),
    ("call +1 415 555 2671", "call [PHONE]"),
    ("call (415) 555-2671", "call [PHONE]"),
    ("ruf +49 30 901820", "ruf [PHONE]"),
    ("uk 020 7946 0958", "uk [PHONE]"),
    ("sk-proj-abcDEF1234567890abcdefXYZ", "[SECRET]"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[SECRET]"),
    ("ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "[SECRET]"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[SECRET]"),
    ("AKIAIOSFODNN7EXAMPLE", "[SECRET]"),
    ("xoxb-123456789012-abcdefghij", "[SECRET]"),
    ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "[SECRET]"),
    ("glpat-abcdefghij1234567890", "[SECRET]"),
    (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP",
        "[SECRET]",
    ),
    ("-----BEGIN RSA PRIVATE KEY-----", "[SECRET]"),
    ("password=hunter2 ok", "password=[SECRET] ok"),
    ("API_KEY: abc123", "API_KEY: [SECRET]"),
    ("https://user:pa55w0rd@host/x", "https://user:[SECRET]@host/x"),
    ("ref Zx9Kq2Lm8Pn4Rt7Vw1Yb5Cd3", "ref [SECRET]"),
    ("sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "sha [SECRET]"),
]

FALSE_POSITIVES = [
    "num 4111111111111112 kept",  # 16 digits failing Luhn
    "order 1234567890123 shipped",  # 13 digits failing Luhn
    "iban DE89 3704 0044 0532 0130 01 wrong check",  # mod-97 fails
    "version 3.11.4 at 10:30 on 2026-11-27",
    "ip-like 999.1.1.1 and 1.2.3",
    "ssn-like 000-12-3456 and 666-12-3456 and 123-00-4567",
    "room 12345678",
    "internationalization and responsibilities",  # long words, no digits
    "file_name_with_underscores_v2",  # low entropy
    "user at example dot com",
    "ratio 16:9 and 10:30",
    "call me at 555",
    "",
    "short",
]


@pytest.mark.parametrize(("text", "expected"), TRUE_POSITIVES)
def test_true_positives(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_false_positives_are_kept(text: str) -> None:
    assert scrub(text) == text


def test_several_kinds_in_one_text() -> None:
    text = "Hi jane@corp.io, card 5555555555554444, ssn 078-05-1120, key AKIAIOSFODNN7EXAMPLE"
    assert scrub(text) == "Hi [EMAIL], card [CARD], ssn [SSN], key [SECRET]"


def test_validators() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert iban_ok("de89 3704 0044 0532 0130 00")
    assert not iban_ok("DE89")
    assert looks_random("Zx9Kq2Lm8Pn4Rt7Vw1Yb5Cd3")
    assert not looks_random("abcdefghijklmnopqrstuvwxyz")  # no digit
    assert not looks_random("aaaaaaaaaa1111111111")  # low entropy
    assert not looks_random("short1A")


def test_scrub_is_idempotent() -> None:
    for text, _ in TRUE_POSITIVES:
        once = scrub(text)
        assert scrub(once) == once


def test_safe_scrub_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from deskcorder.capture import scrub as mod

    def broken(text: str) -> list[mod.Finding]:
        raise RuntimeError("detector bug")

    monkeypatch.setattr(mod, "DETECTORS", (*mod.DETECTORS, broken))
    assert mod.safe_scrub("mail jane@example.com") == "[REDACTED]"
