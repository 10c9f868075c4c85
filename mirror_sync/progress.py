"""Progress: a bar on a terminal, plain key=value log lines otherwise (cron)."""
from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("mirror_sync")


class Progress:
    def __init__(self, total: int, what: str, stream: TextIO = sys.stderr, interval: float = 10.0) -> None:
        self.total = total
        self.what = what
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.last = 0.0

    def grow(self, n: int) -> None:
        """More work became known (a dependency closure finds its projects as it goes)."""
        self.total += n

    def close(self) -> None:
        """The end of work whose total grew: show the final count once."""
        if self.done and self.last < time.monotonic():
            self._show(time.monotonic())

    def step(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        now = time.monotonic()
        if now - self.last >= self.interval or self.done == self.total:
            self.last = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.tty:
            width = 30
            filled = int(width * self.done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r{self.what} [{bar}] {self.done}/{self.total} failed={self.failed} {rate:.0f}/s ")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        else:
            log.info("event=progress what=%s done=%d total=%d failed=%d rate=%.1f", self.what, self.done, self.total, self.failed, rate)
