"""The record-line shape check: the numpy path and the bytes path agree on every block."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from deskcorder.collector import validate

# lines built from the bytes that matter to the check, and a few that do not
_line = st.lists(st.sampled_from([b"{", b"}", b'"k":1', b"x", b" ", b"\n"]), max_size=6).map(
    b"".join
)
_block = st.lists(_line, min_size=1, max_size=12).map(lambda ls: b"\n".join(ls) + b"\n")


def test_numpy_is_what_the_collector_uses() -> None:
    assert validate._numpy_object_lines() is not None  # the [collector] extra installs numpy
    assert validate._object_lines is not validate._object_lines_bytes


@settings(max_examples=400, deadline=None)
@given(_block)
def test_numpy_and_bytes_checks_agree(block: bytes) -> None:
    fast = validate._numpy_object_lines()
    assert fast is not None
    assert fast(block) == validate._object_lines_bytes(block)


def test_known_blocks() -> None:
    fast = validate._numpy_object_lines()
    assert fast is not None
    for check in (fast, validate._object_lines_bytes):
        assert check(b'{"k":"mv"}\n{"k":"kd"}\n') == 2
        assert check(b"{}\n") == 1
        assert check(b'{"k":"mv"}\n[1]\n') is None
        assert check(b'{"k":"mv"}\n\n{"k":"kd"}\n') is None  # an empty line
        assert check(b'{"k":"mv"} \n') is None
        assert check(b"\n") is None
        assert check(b"{\n") is None
