"""How many CPU cores this process may run on: what sizes the worker pools of sync, verify and
rebuild-state."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may be scheduled on (its affinity mask: a container's or taskset's
    limit, not the host's count); at least 1.

    >>> usable_cores() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
