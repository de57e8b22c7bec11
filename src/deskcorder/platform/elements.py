"""What the accessibility backends share (no OS calls here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_PATH = 16  # roles of a path kept (the innermost ones)


def element_path(
    element: Any, parent: Callable[[Any], Any], role: Callable[[Any], str], limit: int = MAX_PATH
) -> tuple[str, ...]:
    """Roles from the top down to ``element``, walking ``parent`` at most ``limit`` steps."""
    roles = [role(element)]
    node = element
    for _ in range(limit - 1):
        node = parent(node)
        if node is None:
            break
        roles.append(role(node))
    return tuple(reversed(roles))


class PolledAccessibility:
    """Base of the backends whose API has no focus notification the monitor can use: it
    asks every ``poll_s`` seconds, on its own thread, where the OS API object (``api``,
    e.g. COM initialised for that thread) is created on first use."""

    poll_s: float | None = 0.1

    def __init__(self, api: Callable[[], Any]) -> None:
        self._factory = api
        self._api: Any = None

    def start(self, changed: Callable[[], None]) -> None:
        """Nothing to start: the API is created on the monitor's thread at first use."""

    def stop(self, timeout: float) -> None:
        self._api = None

    def api(self) -> Any:
        if self._api is None:
            self._api = self._factory()
        return self._api
