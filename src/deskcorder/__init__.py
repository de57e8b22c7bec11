"""deskcorder: an overt, policy-driven desktop activity recorder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from deskcorder.storage.reader import Session


def read_session(path: Any) -> Session:
    """Open a recorded session (a session folder or one chunk file) for reading."""
    from deskcorder.storage.reader import read_session as _read

    return _read(path)


__all__ = ["__version__", "read_session"]
