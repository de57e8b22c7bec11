"""Is the connection metered? The Network List Manager's connection cost (Windows).

``INetworkCostManager::GetCost`` (netlistmgr.h) gives ``NLM_CONNECTION_COST``
flags for the machine's connections as a whole; Windows itself calls a
connection metered when it is not ``UNRESTRICTED`` (fixed or variable cost,
roaming, over its data limit). The COM call is isolated in
:func:`connection_cost` so tests replace it; comtypes is imported there, so this
module imports on every OS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NLM_CONNECTION_COST_UNKNOWN = 0x0
NLM_CONNECTION_COST_UNRESTRICTED = 0x1
NLM_CONNECTION_COST_FIXED = 0x2
NLM_CONNECTION_COST_VARIABLE = 0x4
NLM_CONNECTION_COST_OVERDATALIMIT = 0x10000
NLM_CONNECTION_COST_CONGESTED = 0x20000
NLM_CONNECTION_COST_ROAMING = 0x40000
NLM_CONNECTION_COST_APPROACHINGDATALIMIT = 0x80000

_METERED = (
    NLM_CONNECTION_COST_FIXED
    | NLM_CONNECTION_COST_VARIABLE
    | NLM_CONNECTION_COST_OVERDATALIMIT
    | NLM_CONNECTION_COST_ROAMING
)
NETWORKLIST_LIBID = "{DCB00D01-570F-4A9B-8D69-199FDBA5723B}"  # the Network List Manager


def metered_from_cost(cost: int) -> bool | None:
    """NLM_CONNECTION_COST flags -> metered? (None: unknown)."""
    if cost == NLM_CONNECTION_COST_UNKNOWN:
        return None
    return bool(cost & _METERED)


def connection_cost() -> int:  # pragma: no cover - Windows only (tests replace it)
    """The current ``NLM_CONNECTION_COST`` flags (COM, on the calling thread)."""
    import comtypes  # type: ignore[import-not-found,unused-ignore]
    import comtypes.client  # type: ignore[import-not-found,unused-ignore]

    comtypes.CoInitialize()  # per thread: the conditions thread asks
    nlm: Any = comtypes.client.GetModule(NETWORKLIST_LIBID)
    manager: Any = comtypes.client.CreateObject(
        nlm.NetworkListManager, interface=nlm.INetworkCostManager
    )
    return int(manager.GetCost(None))


class CostProbe:
    """``Backend.network`` on Windows: True metered, False not, None unknown."""

    def __init__(self, cost: Callable[[], int] = connection_cost) -> None:
        self._cost = cost

    def __call__(self) -> bool | None:
        return metered_from_cost(self._cost())
