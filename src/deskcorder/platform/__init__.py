"""Per-OS backends. The ONLY package with per-OS code.

``select_backend`` picks one: explicit argument > ``DESKCORDER_BACKEND`` env var
> ``sys.platform``. Backend modules are imported lazily, so importing this
package does no OS work and works on every OS.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from deskcorder.errors import UsageError
from deskcorder.platform.base import Backend

BACKENDS = {
    "fake": "deskcorder.platform.fake",
    "x11": "deskcorder.platform.linux",
    "windows": "deskcorder.platform.windows",
    "macos": "deskcorder.platform.macos",
}


def default_backend_name(platform: str | None = None) -> str:
    platform = platform or sys.platform
    if platform.startswith("win"):
        return "windows"
    if platform == "darwin":
        return "macos"
    return "x11"


def select_backend(name: str | None = None, **options: Any) -> Backend:
    """Create the backend ``name`` (or the one for this OS). Does no OS work yet."""
    chosen = name or os.environ.get("DESKCORDER_BACKEND") or default_backend_name()
    module_name = BACKENDS.get(chosen)
    if module_name is None:
        raise UsageError(
            f"unknown backend {chosen!r}; expected one of: {', '.join(sorted(BACKENDS))}"
        )
    module = importlib.import_module(module_name)
    backend: Backend = module.create_backend(**options)
    return backend
