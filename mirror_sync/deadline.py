"""A total deadline for each request.

A socket timeout bounds each read, not the request: an answer that trickles in a byte a second
never trips it. One watchdog thread per process keeps the deadlines of the requests in flight
and, when one passes, shuts that request's socket down; the blocked read then returns, and the
response reports the deadline instead of a short body.
"""
from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass(order=True)
class Armed:
    when: float
    seq: int
    sock: Optional[socket.socket] = field(compare=False, default=None)
    fired: bool = field(compare=False, default=False)
    done: bool = field(compare=False, default=False)


class Watchdog:
    """Shuts down the sockets of requests whose deadline passed."""

    def __init__(self) -> None:
        self._heap: list[Armed] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="deadlines", daemon=True)
        self._thread.start()

    def arm(self, seconds: float, sock: Optional[socket.socket]) -> Armed:
        entry = Armed(time.monotonic() + seconds, next(self._seq), sock)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()
        return entry

    def abort_all(self) -> None:
        """A run that stops abandons its requests: every socket in flight is shut down now, so
        the threads reading them return at once instead of at their deadline."""
        with self._cond:
            entries = [e for e in self._heap if not e.done]
        for entry in entries:
            entry.fired = True
            if entry.sock is not None:
                try:
                    entry.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def disarm(entry: Armed) -> None:
        entry.done = True  # dropped from the heap when it comes up

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                entry = self._heap[0]
                delay = entry.when - time.monotonic()
                if delay > 0 and not entry.done:
                    self._cond.wait(min(delay, 60.0))
                    continue
                heapq.heappop(self._heap)
            if entry.done or entry.sock is None:
                continue
            entry.fired = True
            try:
                entry.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the request ended on its own


_watchdog: Optional[Watchdog] = None
_owner_pid = 0
_lock = threading.Lock()


def abort_requests() -> None:
    """Shut down every request of this process still in flight (see Watchdog.abort_all)."""
    if _watchdog is not None and _owner_pid == os.getpid():
        _watchdog.abort_all()


def watchdog() -> Watchdog:
    """This process's watchdog (a forked worker process starts its own)."""
    global _watchdog, _owner_pid
    with _lock:
        if _watchdog is None or _owner_pid != os.getpid():
            _watchdog = Watchdog()
            _owner_pid = os.getpid()
        return _watchdog
