"""Scrubbing of sensitive strings from typed text and window titles.

:func:`scrub` replaces every finding with a typed placeholder:

=============  ===========================================================================
placeholder    what is detected (and validated, to keep false positives down)
=============  ===========================================================================
``[SECRET]``   API tokens with known prefixes (``sk-``, ``sk_live_``, ``ghp_``/``gho_``/...
               ``github_pat_``, ``AKIA``/``ASIA``, ``xox?-``, ``AIza``, ``glpat-``, ``npm_``,
               ``hf_``), JWTs, PEM private key headers, the value of ``password=...`` /
               ``token: ...`` pairs, credentials in URLs; and, last of all, high-entropy
               strings (>= 20 characters mixing letters and digits with Shannon entropy
               >= 3.5 bit/char, or >= 32 hex digits)
``[EMAIL]``    e-mail addresses
``[CARD]``     payment card numbers: 13-19 digits (spaces or dashes allowed) passing Luhn
``[IBAN]``     IBANs: country code, check digits, 11-30 alphanumerics passing ISO 7064 mod-97
``[SSN]``      US social security numbers written ``123-45-6789`` / ``123 45 6789``
               (invalid areas 000, 666, 9xx and zero groups excluded)
``[IP]``       IPv4 and IPv6 addresses (validated with :mod:`ipaddress`)
``[PHONE]``    phone numbers valid for their country (Google's libphonenumber rules via the
               ``phonenumbers`` package): international ``+...`` numbers, and national
               numbers for :data:`PHONE_REGIONS`
=============  ===========================================================================

Detectors run in the order above on the text left by the previous ones;
placeholders contain no digits, so a later detector never re-matches them.
Everything here is pure and thread-safe; the pipeline calls it on buffered
words and window titles, never per key from a hook.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR")
"""Regions whose national phone number formats are recognised (``+`` numbers: all)."""


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # placeholder name without brackets: EMAIL, CARD ...
    start: int
    end: int


# ---------------------------------------------------------------------------
# validators (pure)
# ---------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """True when ``candidate`` (spaces allowed) is a structurally valid IBAN (mod-97 == 1)."""
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    if not s.isalnum() or not s.isascii():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def shannon_entropy(s: str) -> float:
    """Bits per character of ``s``'s character distribution."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def looks_random(token: str) -> bool:
    """High-entropy token heuristic: >= 20 chars with a run of >= 16 between separators,
    mixing letters and digits, entropy >= 3.5 bit/char (hex: >= 32 chars, >= 3.0)."""
    if len(token) < 20:
        return False
    # identifiers made of short parts (snake_case, UUIDs, file-names-v2) are not keys
    if max(len(part) for part in re.split(r"[_.~-]", token)) < 16:
        return False
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    if not (has_digit and has_alpha):
        return False
    hexish = all(c in "0123456789abcdefABCDEF" for c in token)
    # hex digests have at most 4 bit/char; a 32+ char hex string is a key or hash
    if hexish:
        return len(token) >= 32 and shannon_entropy(token) >= 3.0
    return shannon_entropy(token) >= 3.5


# ---------------------------------------------------------------------------
# detectors: each returns findings on ``text``
# ---------------------------------------------------------------------------

_SECRET_RE = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}",  # OpenAI / Anthropic style
            r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
            r"\bgithub_pat_[A-Za-z0-9_]{22,}",
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
            r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
            r"\bglpat-[0-9A-Za-z_-]{20,}",  # GitLab
            r"\bnpm_[A-Za-z0-9]{36}",
            r"\bhf_[A-Za-z]{30,}",  # Hugging Face
        )
    )
)
# key = value pairs: keep the key, hide the value
_SECRET_PAIR = re.compile(
    r"(?i)\b(?:password|passwd|passwort|pwd|pass|secret|token|api[_-]?key|apikey|"
    r"access[_-]?key|private[_-]?key|client[_-]?secret|auth)\b\s*[:=]\s*(\S+)"
)
_URL_CREDENTIALS = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s/@]+)@")
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.~-]{20,}")

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_IBAN = re.compile(r"(?i)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]|\.\d)")
_IPV6 = re.compile(r"(?i)(?<![0-9a-f:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![0-9a-f:])")


def find_secrets(text: str) -> list[Finding]:
    found = [Finding("SECRET", m.start(), m.end()) for m in _SECRET_RE.finditer(text)]
    found += [Finding("SECRET", m.start(1), m.end(1)) for m in _SECRET_PAIR.finditer(text)]
    found += [Finding("SECRET", m.start(1), m.end(1)) for m in _URL_CREDENTIALS.finditer(text)]
    return found


def find_random_tokens(text: str) -> list[Finding]:
    found = []
    for m in _TOKEN.finditer(text):
        token = m.group().strip("=.~-_")
        if "@" not in m.group() and looks_random(token):
            found.append(Finding("SECRET", m.start(), m.end()))
    return found


def find_emails(text: str) -> list[Finding]:
    return [Finding("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text)]


def find_cards(text: str) -> list[Finding]:
    out = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            out.append(Finding("CARD", m.start(), m.end()))
    return out


def find_ibans(text: str) -> list[Finding]:
    out = []
    for m in _IBAN.finditer(text):
        candidate = m.group()
        # a trailing word glued by the optional spaces: shrink until valid
        while len(candidate.replace(" ", "")) >= 15:
            if iban_ok(candidate):
                out.append(Finding("IBAN", m.start(), m.start() + len(candidate)))
                break
            cut = candidate.rfind(" ")
            if cut <= 4:
                break
            candidate = candidate[:cut]
    return out


def find_ssns(text: str) -> list[Finding]:
    return [Finding("SSN", m.start(), m.end()) for m in _SSN.finditer(text)]


def find_ips(text: str) -> list[Finding]:
    out = []
    for m in _IPV4.finditer(text):
        if all(int(part) <= 255 for part in m.group().split(".")):
            out.append(Finding("IP", m.start(), m.end()))
    for m in _IPV6.finditer(text):
        candidate = m.group()
        if candidate.count(":") < 2 or len(candidate) < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        out.append(Finding("IP", m.start(), m.end()))
    return out


# phone-like runs: optional +, digits with spaces, dots, dashes, slashes, parentheses
_PHONE_CANDIDATE = re.compile(r"(?<![\w+])\+?\(?\d[\d\s().\-/]{5,22}\d(?!\w)")


def find_phones(text: str) -> list[Finding]:
    """Phone-like runs of 7-15 digits that libphonenumber says are valid numbers."""
    out: list[Finding] = []
    for m in _PHONE_CANDIDATE.finditer(text):
        candidate = m.group()
        if not 7 <= sum(c.isdigit() for c in candidate) <= 15:
            continue
        if _valid_phone(candidate):
            out.append(Finding("PHONE", m.start(), m.end()))
    return out


def _valid_phone(candidate: str) -> bool:
    import phonenumbers  # imported on first use (~30 ms)

    # the matcher (not parse) also checks that digits are grouped like a phone number
    # (dates and SSN-like groupings are not); run on the short candidate only
    for region in PHONE_REGIONS:
        for _ in phonenumbers.PhoneNumberMatcher(
            candidate, region, leniency=phonenumbers.Leniency.VALID
        ):
            return True
        if candidate.startswith("+"):
            return False  # international numbers do not depend on the region
    return False


DETECTORS: tuple[Callable[[str], list[Finding]], ...] = (
    find_secrets,
    find_emails,
    find_cards,
    find_ibans,
    find_ssns,
    find_ips,
    find_phones,
    find_random_tokens,
)


def _merge(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings merge into one span (the earliest-starting kind wins)."""
    merged: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            if f.end > last.end:
                merged[-1] = Finding(last.kind, last.start, f.end)
            continue
        merged.append(f)
    return merged


def _apply(text: str, findings: list[Finding]) -> str:
    parts = []
    pos = 0
    for f in findings:
        parts.append(text[pos : f.start])
        parts.append(f"[{f.kind}]")
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def findings(text: str) -> list[Finding]:
    """Every finding in ``text``, each detector run on what earlier ones left (spans refer
    to the text after those replacements; use :func:`scrub` for the result)."""
    out: list[Finding] = []
    for detector in DETECTORS:
        found = _merge(detector(text))
        if found:
            out.extend(found)
            text = _apply(text, found)
    return out


def scrub(text: str) -> str:
    """``text`` with every sensitive finding replaced by its ``[KIND]`` placeholder."""
    if len(text) < 6:  # nothing detectable is this short
        return text
    for detector in DETECTORS:
        found = detector(text)
        if found:
            text = _apply(text, _merge(found))
    return text


def kinds(text: str) -> list[str]:
    """The placeholder kinds found in ``text`` (for tests and diagnostics)."""
    return [f.kind for f in findings(text)]


REDACTED = "[REDACTED]"


def safe_scrub(text: str) -> str:
    """:func:`scrub` that fails closed: if a detector raises, the whole text is withheld."""
    try:
        return scrub(text)
    except Exception:
        import logging

        logging.getLogger(__name__).exception("scrubbing failed; text withheld")
        return REDACTED
