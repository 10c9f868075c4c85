"""Peak memory of a process tree: the sum of PSS over the tree, sampled.

GNU time's %M is the largest resident set of any one process of the tree. A tool that forks workers
spreads its memory over several processes, so the benchmark also samples the whole tree (every
`interval` seconds) and sums each process's PSS (proportional set size: shared pages are split
between the processes sharing them, so forked copies are not counted twice).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _descendants(pid: int) -> list[int]:
    seen: list[int] = []
    stack = _children(pid)
    while stack and len(seen) < 10_000:
        p = stack.pop()
        seen.append(p)
        stack.extend(_children(p))
    return seen


def _pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class TreeSampler:
    """Samples the descendants of `root_pid` (not the root itself: that is GNU time) until stopped."""

    def __init__(self, root_pid: int, interval: float = 0.05) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "TreeSampler":
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_pss_kb(p) for p in _descendants(self.root_pid))
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)

    def stop(self) -> float:
        """Peak in MB."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.peak_kb / 1024.0
