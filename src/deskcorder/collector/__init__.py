"""Reference collection server (optional extra ``[collector]``).

Depends only on ``deskcorder.events``, ``deskcorder.errors`` and
``deskcorder.storage.chunk`` of the agent (DESIGN dependency rule).
"""

from deskcorder.collector.backends import open_local
from deskcorder.collector.base import Limits
from deskcorder.collector.store import Store

__all__ = ["Limits", "Store", "open_local"]
