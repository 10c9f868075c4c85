"""Hold every packet of one NFQUEUE queue for a fixed time: the round trip of the latency scenario.

Runs inside the upstream's network namespace (`python -m bench.netdelay --queue 0 --delay-ms 50`),
where an iptables rule in `raw PREROUTING` queues every packet that arrives from the client. The
kernel keeps the packet; this program only sees its first bytes (IP and TCP headers), notes when it
arrived (the kernel's receive stamp), and accepts it `delay` later. Packets of one queue are released
in arrival order, so one batch verdict (`NFQNL_MSG_VERDICT_BATCH`: every id up to N) releases all
that are due; it wakes at most once per `quantum` (1 ms) and then releases what is due within half a
quantum, so a hold is right to +-0.5 ms and its CPU does not grow with the packet rate.

Why this placement holds the whole round trip on the client->server direction: a request and its
response, a TCP handshake (the SYN waits, the SYN-ACK does not), and the ACK clock of a download
(the server's window opens one round trip after it sent) all cost exactly one RTT, as on a path with
RTT/2 each way. Holding packets at IP input, after `ip_rcv` has orphaned them, charges nothing to
the sender's socket (TCP small queues), which holding them on the server's own output path would.

Pure standard library: the nfnetlink messages are built with `struct`. Control on stdin, one
command a line, answers on stdout as one JSON line: `stats` (counters since the last `stats`),
`quit`. End of stdin also ends it, so it never outlives the benchmark.
"""
from __future__ import annotations

import argparse
import collections
import errno
import gc
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Deque, Iterator, Optional

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT_BATCH = 3
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_TIMESTAMP = 4
NFQA_PAYLOAD = 10
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_GSO = 1 << 2  # GSO packets are queued whole, not segmented first
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NLMSG_DONE = 3
NF_ACCEPT = 1
COPY_RANGE = 64  # IPv4 header (up to 60 bytes) and the TCP flags
QUEUE_MAXLEN = 200_000
SO_TIMESTAMP = 29  # SO_TIMESTAMP_OLD on Linux; the socket module does not name it


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg_type: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    """One nfnetlink message of the queue subsystem: nlmsghdr, nfgenmsg (AF_UNSPEC, version 0, queue), attributes."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def config_messages(queue: int, maxlen: int = QUEUE_MAXLEN) -> list[bytes]:
    bind = _attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, socket.htons(socket.AF_INET)))
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", COPY_RANGE, NFQNL_COPY_PACKET))
    rest = (params + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
            + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO)) + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO)))
    return [message(NFQNL_MSG_CONFIG, queue, bind, 1, NLM_F_REQUEST | NLM_F_ACK),
            message(NFQNL_MSG_CONFIG, queue, rest, 2, NLM_F_REQUEST | NLM_F_ACK)]


def verdict_batch(queue: int, last_id: int, seq: int) -> bytes:
    """Accept every queued packet whose id is at most `last_id`."""
    return message(NFQNL_MSG_VERDICT_BATCH, queue, _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last_id)), seq)


@dataclass(frozen=True)
class Queued:
    packet_id: int
    syn_port: Optional[int]  # destination port of a connection's first SYN, else None
    stamp: Optional[float] = None  # when the kernel received it (CLOCK_REALTIME), if it stamped it


def parse_packet(body: memoryview) -> Optional[Queued]:
    """The attributes of one NFQNL_MSG_PACKET (after nfgenmsg): its id, and whether it opens a TCP connection."""
    packet_id: Optional[int] = None
    payload: Optional[memoryview] = None
    stamp: Optional[float] = None
    off = 0
    while off + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, off)
        if length < 4:
            break
        kind &= 0x3FFF  # NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if kind == NFQA_PACKET_HDR:
            packet_id = struct.unpack_from("!I", body, off + 4)[0]
        elif kind == NFQA_PAYLOAD:
            payload = body[off + 4: off + length]
        elif kind == NFQA_TIMESTAMP and length >= 20:
            sec, usec = struct.unpack_from("!QQ", body, off + 4)
            stamp = sec + usec / 1e6
        off += (length + 3) & ~3
    if packet_id is None:
        return None
    return Queued(packet_id, syn_port(payload) if payload is not None else None, stamp)


def syn_port(ip: memoryview) -> Optional[int]:
    """The destination port when `ip` (an IPv4 packet's first bytes) is a TCP SYN without ACK."""
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    ihl = (ip[0] & 0x0F) * 4
    if len(ip) < ihl + 14:
        return None
    flags = ip[ihl + 13]
    if flags & 0x02 and not flags & 0x10:
        return int(struct.unpack_from("!H", ip, ihl + 2)[0])
    return None


def messages(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(type, payload after nlmsghdr) of each netlink message in one datagram."""
    off = 0
    while off + 16 <= len(buf):
        length, kind = struct.unpack_from("=IH", buf, off)
        if length < 16 or off + length > len(buf):
            break
        yield kind, buf[off + 16: off + length]
        off += (length + 3) & ~3


@dataclass
class Stats:
    """Counters since the last report."""

    packets: int = 0  # read from the queue
    released: int = 0  # accepted (the hold times are theirs)
    syns: dict[int, int] = field(default_factory=dict)
    hold_min_ms: float = float("inf")
    hold_max_ms: float = 0.0
    hold_sum_ms: float = 0.0
    backlog_max: int = 0  # packets held at once
    read_late: int = 0  # packets this program read only after they were due (held too long)
    wakeups: int = 0
    late: list[int] = field(default_factory=lambda: [0, 0, 0])  # packets held longer than delay + 1, 5, 20 ms
    overruns: int = 0  # notifications the kernel could not deliver (ENOBUFS)

    def as_json(self, delay_ms: float, kernel: dict[str, int]) -> dict[str, object]:
        return {
            "delay_ms": delay_ms,
            "packets": self.packets,
            "released": self.released,
            "syns": {str(k): v for k, v in sorted(self.syns.items())},
            "hold_min_ms": round(self.hold_min_ms, 3) if self.released else None,
            "hold_mean_ms": round(self.hold_sum_ms / self.released, 3) if self.released else None,
            "hold_max_ms": round(self.hold_max_ms, 3) if self.released else None,
            "backlog_max": self.backlog_max,
            "read_late": self.read_late,
            "wakeups": self.wakeups,
            "late_1ms": self.late[0], "late_5ms": self.late[1], "late_20ms": self.late[2],
            "overruns": self.overruns,
            **kernel,
        }


def kernel_counters(queue: int) -> dict[str, int]:
    """This namespace's /proc/net/netfilter/nfnetlink_queue line for `queue`: packets the kernel dropped."""
    try:
        with open("/proc/net/netfilter/nfnetlink_queue") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 7 and int(parts[0]) == queue:
                    return {"queue_dropped": int(parts[5]), "user_dropped": int(parts[6])}
    except OSError:
        pass
    return {}


def wake_at(next_due: float, last_release: float, quantum: float) -> float:
    """When to wake next: when the next packet is due, but never sooner than a quantum after the
    last release (at most one wake-up per quantum however many packets flow: the program's CPU
    follows the quantum, not the packet rate). A wake releases everything due within half a quantum
    of it, so on a busy link each hold is right to +-quantum/2 and right on average, and on a quiet
    one a packet waits exactly its time."""
    return max(next_due, last_release + quantum)


class Delayer:
    def __init__(self, queue: int, delay_s: float, quantum_s: float = 0.001) -> None:
        self.queue = queue
        self.delay_s = delay_s
        self.quantum_s = quantum_s
        self._last_release = 0.0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:  # root: past rmem_max, so a burst of notifications is not lost
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.bind((0, 0))
        # any socket asking for receive timestamps makes the kernel stamp every packet it receives;
        # the queue passes the stamp on (NFQA_TIMESTAMP), so the hold is measured from the wire
        self._stamps = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stamps.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.pending: Deque[tuple[float, int, float]] = collections.deque()  # (due, id, arrived)
        self.stamped = False  # every packet so far came with the kernel's receive stamp
        self._unstamped = False
        self.stats = Stats()
        self.seq = 10
        self.buf = bytearray(1 << 18)
        self._configure()
        self.sock.setblocking(False)

    def _configure(self) -> None:
        for msg in config_messages(self.queue):
            self.sock.send(msg)
            data = self.sock.recv(65536)
            for kind, payload in messages(memoryview(data)):
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", payload, 0)[0]
                    if code != 0:
                        raise OSError(-code, f"NFQUEUE {self.queue}: the kernel refused the configuration: {os.strerror(-code)}")

    def drain(self) -> None:
        """Read every notification waiting (bounded per call), noting when each packet arrived."""
        for _ in range(4096):
            try:
                n = self.sock.recv_into(self.buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.stats.overruns += 1
                    continue
                raise
            now = time.monotonic()
            real = time.time()
            st = self.stats
            for kind, payload in messages(memoryview(self.buf)[:n]):
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    continue
                q = parse_packet(payload[4:])
                if q is None:
                    continue
                arrived = now
                if q.stamp is not None and 0.0 <= real - q.stamp < 10.0:
                    arrived = now - (real - q.stamp)  # the kernel's receive time: the hold starts there
                    if real - q.stamp > self.delay_s:
                        st.read_late += 1
                else:
                    self._unstamped = True
                self.stamped = not self._unstamped
                self.pending.append((arrived + self.delay_s, q.packet_id, arrived))
                st.packets += 1
                if q.syn_port is not None:
                    st.syns[q.syn_port] = st.syns.get(q.syn_port, 0) + 1
            if len(self.pending) > st.backlog_max:
                st.backlog_max = len(self.pending)

    def release(self) -> Optional[float]:
        """Accept what is due (within half a quantum); the seconds until the next wake (None: nothing held)."""
        now = time.monotonic()
        last = None
        st = self.stats
        target = self.delay_s * 1000.0
        horizon = now + self.quantum_s / 2
        while self.pending and self.pending[0][0] <= horizon:
            _due, last, arrived = self.pending.popleft()
            st.released += 1
            hold = (now - arrived) * 1000.0
            st.hold_sum_ms += hold
            if hold > st.hold_max_ms:
                st.hold_max_ms = hold
            if hold < st.hold_min_ms:
                st.hold_min_ms = hold
            if hold > target + 1.0:
                st.late[0] += 1
                if hold > target + 5.0:
                    st.late[1] += 1
                    if hold > target + 20.0:
                        st.late[2] += 1
        if last is not None:
            self.seq += 1
            self.sock.send(verdict_batch(self.queue, last, self.seq))
            self._last_release = now
        if not self.pending:
            return None
        return max(0.0, wake_at(self.pending[0][0], self._last_release, self.quantum_s) - time.monotonic())

    def report(self) -> str:
        line = json.dumps(self.stats.as_json(self.delay_s * 1000.0, kernel_counters(self.queue)))
        self.stats = Stats()
        return line


def raise_priority() -> str:
    """The network does not slow down when the tools keep the CPUs busy: run as a real-time task
    (it sleeps between packets and uses little CPU), else at nice -10."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return "SCHED_FIFO 10"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "default"


def serve(queue: int, delay_ms: float, quantum_ms: float = 1.0) -> int:
    priority = raise_priority()
    gc.disable()  # nothing here makes reference cycles; no collector pauses while packets wait
    d = Delayer(queue, delay_ms / 1000.0, quantum_ms / 1000.0)
    print(json.dumps({"ready": True, "queue": queue, "delay_ms": delay_ms, "quantum_ms": quantum_ms, "priority": priority}), flush=True)
    wait: Optional[float] = None
    while True:
        # While packets are held and the kernel stamps them, wake only when the next one is due and
        # read what came in meanwhile then: a newer packet is due later than every older one, and its
        # hold counts from its stamp, so reading it late costs nothing but saves a wake-up per packet.
        # select(2), not epoll: its timeout has microseconds, epoll's milliseconds.
        watch = [sys.stdin] if wait is not None and d.stamped else [d.sock, sys.stdin]
        readable, _, _ = select.select(watch, [], [], 1.0 if wait is None else wait)
        d.stats.wakeups += 1
        if sys.stdin in readable:
            line = sys.stdin.readline()
            cmd = line.strip()
            if not line or cmd == "quit":
                d.release()
                return 0
            if cmd == "stats":
                print(d.report(), flush=True)
        d.release()  # what is due goes first; reading what came in meanwhile can wait that long
        d.drain()
        wait = d.release()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.netdelay", description=__doc__.splitlines()[0])
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--quantum-ms", type=float, default=1.0,
                   help="release packets in batches at most this often; each hold is right to +-quantum/2 (default 1)")
    args = p.parse_args(argv)
    try:
        return serve(args.queue, args.delay_ms, args.quantum_ms)
    except OSError as exc:
        print(json.dumps({"ready": False, "error": str(exc)}), flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
