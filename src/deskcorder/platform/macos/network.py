"""Is the connection metered? The Network framework's path monitor (macOS).

``nw_path_monitor`` reports the current path; macOS marks a path *expensive*
(cellular, a phone's Personal Hotspot) or *constrained* (Low Data Mode), the
two cases where System Settings itself holds back background traffic. The
monitor calls back on a dispatch queue; the probe returns the last path's
answer (None until the first one). The pyobjc calls are behind
:class:`PathAPI`, which tests replace; pyobjc is imported in its methods, so
this module imports on every OS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class PathAPI:  # pragma: no cover - macOS only (tests pass a fake)
    """The few Network framework calls the probe makes (pyobjc)."""

    def start(self, on_path: Callable[[Any], None]) -> Any:
        import dispatch  # type: ignore[import-not-found,unused-ignore]  # pyobjc-framework-libdispatch
        import Network  # type: ignore[import-not-found,unused-ignore]  # pyobjc-framework-Network

        monitor = Network.nw_path_monitor_create()
        queue = dispatch.dispatch_queue_create(b"deskcorder.network", None)
        Network.nw_path_monitor_set_queue(monitor, queue)
        Network.nw_path_monitor_set_update_handler(monitor, on_path)
        Network.nw_path_monitor_start(monitor)
        return monitor

    def expensive(self, path: Any) -> bool:
        import Network  # type: ignore[import-not-found,unused-ignore]

        return bool(Network.nw_path_is_expensive(path))

    def constrained(self, path: Any) -> bool:
        import Network  # type: ignore[import-not-found,unused-ignore]

        return bool(Network.nw_path_is_constrained(path))


class PathProbe:
    """``Backend.network`` on macOS: True metered, False not, None unknown (so far)."""

    def __init__(self, api: Any = None) -> None:
        self._api = api if api is not None else PathAPI()
        self._monitor: Any = None
        self._lock = threading.Lock()
        self._metered: bool | None = None

    def _on_path(self, path: Any) -> None:
        self._metered = self._api.expensive(path) or self._api.constrained(path)

    def __call__(self) -> bool | None:
        with self._lock:
            if self._monitor is None:
                self._monitor = self._api.start(self._on_path)  # kept alive: it calls back
        return self._metered
