"""What a sync over a link cannot beat: the floor of issue 12, and how much of the link a run used."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Floor:
    seconds: float
    bound: str  # "bytes": the bandwidth binds; "round trips": the latency at this many workers does
    transfer_s: float  # bytes / bandwidth
    round_trips_s: float  # requests x RTT / workers

    def ratio(self, wall_s: float) -> float:
        """wall / floor (1.0 is a run that lost nothing to either)."""
        return wall_s / self.seconds if self.seconds > 0 else float("inf")


def floor(bytes_: int, mbit: float, requests: int, rtt_ms: float, workers: int) -> Floor:
    """max(bytes / bandwidth, requests x RTT / workers): every byte crosses the link once, and each
    of `workers` concurrent requests costs at least one round trip."""
    if mbit <= 0 or workers <= 0:
        raise ValueError("bandwidth and workers must be positive")
    transfer = bytes_ * 8 / (mbit * 1_000_000)
    rounds = requests * (rtt_ms / 1000.0) / workers
    return Floor(max(transfer, rounds), "bytes" if transfer >= rounds else "round trips", transfer, rounds)


def utilisation(wire_bytes: int, wall_s: float, mbit: float) -> float:
    """The share of the link's capacity a run used: bytes on the wire / (wall x bandwidth)."""
    if wall_s <= 0 or mbit <= 0:
        return 0.0
    return wire_bytes * 8 / (wall_s * mbit * 1_000_000)
