"""The latency scenario's link: the upstream in its own network namespace behind a veth pair.

    host (the tools)                               namespace msbench-<pid> (nginx, the delay program)
    msb<pid>h 198.18.0.201/30  <== veth ==>  msb<pid>n 198.18.0.202/30
      tbf: client->server rate                 tbf: server->client rate (the downloads)
                                               raw PREROUTING -i msb<pid>n -> NFQUEUE 0: held one RTT

This kernel has no `netem`, so the round trip comes from `bench.netdelay` (an NFQUEUE program in the
namespace, see there why the whole RTT is held on the way in) and the bandwidth from `tbf` on both
ends of the pair. The addresses are a /30 in 198.18.0.200-255, the first one that no interface,
route (more specific than the /24 a fleet test's bridge holds) or neighbour entry of this host uses.
Everything is made by `Link.__enter__` and removed by `__exit__`, also after errors and Ctrl-C:
the processes in the namespace, the namespace (its iptables rules and qdisc with it) and the veth
pair (with the host end's qdisc). Leftovers of a benchmark that was killed (its pid is gone) are
removed at the next start.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
CANDIDATES = [ipaddress.IPv4Network(f"198.18.0.{base}/30") for base in range(200, 256, 4)]
PREFIX = "msbench-"
QUEUE = 0
PROBE_PORT = 81  # nginx answers /probe here, outside the access log the runs are counted from


def pick_subnet(addresses: Iterable[ipaddress.IPv4Address], routes: Iterable[ipaddress.IPv4Network],
                neighbours: Iterable[ipaddress.IPv4Address]) -> Optional[ipaddress.IPv4Network]:
    """The first candidate /30 that collides with nothing: no address of an interface or neighbour
    inside it, no route more specific than a /24 overlapping it (a /24 such as a fleet bridge's
    198.18.0.0/24 is fine: the /30 on the veth is more specific)."""
    addrs = set(addresses) | set(neighbours)
    nets = [r for r in routes if r.prefixlen > 24]
    for cand in CANDIDATES:
        if any(a in cand for a in addrs):
            continue
        if any(cand.overlaps(r) for r in nets):
            continue
        return cand
    return None


def tbf_params(mbit: float, rtt_ms: float) -> dict[str, int]:
    """tbf's rate (bit/s), burst and queue limit (bytes) for a link of `mbit` and `rtt_ms`.

    burst: at least one GSO packet (64 KiB + headers) so tbf never has to split one, else 2 ms of
    the rate; limit: one bandwidth-delay product (the classic router buffer), at least 4 bursts."""
    rate_bps = int(mbit * 1_000_000)
    burst = max(70_000, rate_bps // 8 // 500)
    limit = max(4 * burst, int(rate_bps / 8 * rtt_ms / 1000.0))
    return {"rate": rate_bps, "burst": burst, "limit": limit}


def _run(cmd: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {res.stderr.strip()[:300]}")
    return res


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = _run(["ip", "-j", *args], check=False).stdout.strip()
    try:
        return json.loads(out) if out else []
    except ValueError:
        return []


def host_usage() -> tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv4Network], list[ipaddress.IPv4Address]]:
    """This namespace's IPv4 interface addresses, routes and neighbour entries."""
    addrs = []
    for link in _ip_json("-4", "addr", "show"):
        for a in link.get("addr_info", []):
            addrs.append(ipaddress.IPv4Address(a["local"]))
    routes = []
    for r in _ip_json("-4", "route", "show", "table", "all"):
        dst = r.get("dst", "")
        if dst in ("default", "") or ":" in dst:
            continue
        try:
            routes.append(ipaddress.IPv4Network(dst if "/" in dst else dst + "/32", strict=False))
        except ValueError:
            continue
    neigh = []
    for n in _ip_json("-4", "neigh", "show"):
        try:
            neigh.append(ipaddress.IPv4Address(n["dst"]))
        except (KeyError, ValueError):
            continue
    return addrs, routes, neigh


def missing_tools() -> list[str]:
    return [t for t in ("ip", "tc", "nsenter", "iptables-legacy") if shutil.which(t) is None]


def why_not() -> Optional[str]:
    """None when this host can make the link, else why not (one sentence)."""
    if os.geteuid() != 0:
        return "the latency scenario needs root (network namespaces, veth, tc, iptables); run it as root, or run `--scenario loopback`"
    if not os.path.exists("/proc/net/netfilter/nfnetlink_queue") and not os.path.isdir("/proc/sys/net/netfilter"):
        return "this kernel has no netfilter queue (NFQUEUE), which the latency scenario delays packets with"
    missing = missing_tools()
    if missing:
        return f"the latency scenario needs {', '.join(missing)} (Debian: iproute2, util-linux, iptables)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(log: Callable[[str], None]) -> None:
    """Remove namespaces and veth pairs an earlier benchmark made and did not live to remove."""
    for ns in _ip_json("netns", "list"):
        name = ns.get("name", "")
        m = re.fullmatch(PREFIX + r"(\d+)", name)
        if m and not _alive(int(m.group(1))):
            log(f"removing the leftover namespace {name} of a benchmark that is gone")
            _teardown(name, f"msb{m.group(1)}h", log)


def _ns_pids(ns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def _teardown(ns: str, host_dev: str, log: Callable[[str], None]) -> list[str]:
    """Kill what runs in `ns` (processes this benchmark started there), delete the veth pair and the
    namespace. Returns what is still there afterwards (nothing, normally)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _ns_pids(ns)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and _ns_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
    if os.path.exists(f"/sys/class/net/{host_dev}"):
        _run(["ip", "link", "del", host_dev], check=False)
    if os.path.exists(f"/run/netns/{ns}"):
        _run(["ip", "netns", "del", ns], check=False)
    left = []
    if os.path.exists(f"/sys/class/net/{host_dev}"):
        left.append(f"veth {host_dev}")
    if os.path.exists(f"/run/netns/{ns}"):
        left.append(f"namespace {ns}")
    if left:
        log(f"could not remove {', '.join(left)}")
    return left


@dataclass
class Probe:
    connect_ms: float
    request_ms: float  # GET /probe on the new connection, after connect


def probe_once(host: str, port: int = PROBE_PORT, timeout: float = 5.0) -> Probe:
    """One new TCP connection and one request on it: what a round trip costs right now."""
    t0 = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout) as s:
        t1 = time.perf_counter()
        s.sendall(b"GET /probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
        t2 = time.perf_counter()
    return Probe((t1 - t0) * 1000.0, (t2 - t1) * 1000.0)


def summary(values: Sequence[float]) -> dict[str, float]:
    """min, median, p99 and max of a sample (empty: {})."""
    if not values:
        return {}
    v = sorted(values)
    return {"n": len(v), "min": v[0], "median": statistics.median(v), "p99": v[min(len(v) - 1, int(len(v) * 0.99))], "max": v[-1]}


class Link:
    """`with Link(rtt_ms, mbit, log) as link:` — the namespace, the veth pair, tbf, the delay program."""

    def __init__(self, rtt_ms: float, mbit: float, log: Callable[[str], None]) -> None:
        self.rtt_ms = rtt_ms
        self.mbit = mbit
        self.log = log
        pid = os.getpid()
        self.ns = f"{PREFIX}{pid}"
        self.host_dev = f"msb{pid}h"
        self.ns_dev = f"msb{pid}n"
        self.subnet: Optional[ipaddress.IPv4Network] = None
        self.host_ip = ""
        self.ns_ip = ""
        self.tbf = tbf_params(mbit, rtt_ms)
        self.delayer: Optional[subprocess.Popen[str]] = None
        self.delayer_info: dict[str, Any] = {}
        self._made = False
        self._rx_mark = 0
        self._tx_mark = 0
        self._cpu_mark = 0.0

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.ns}"

    def exec_prefix(self) -> list[str]:
        """Prefix a command with this to run it in the namespace (only the network is entered)."""
        return ["nsenter", f"--net={self.netns_path}"]

    def _in_ns(self, *cmd: str) -> None:
        _run([*self.exec_prefix(), *cmd])

    def __enter__(self) -> "Link":
        reason = why_not()
        if reason is not None:
            raise RuntimeError(reason)
        remove_stale(self.log)
        self.subnet = pick_subnet(*host_usage())
        if self.subnet is None:
            raise RuntimeError("every /30 in 198.18.0.200-255 is in use on this host (addresses, routes or neighbours)")
        hosts = list(self.subnet.hosts())
        self.host_ip, self.ns_ip = str(hosts[0]), str(hosts[1])
        self._made = True
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        p = self.tbf
        _run(["ip", "netns", "add", self.ns])
        _run(["ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev])
        _run(["ip", "link", "set", self.ns_dev, "netns", self.ns])
        # IPv4 only: no router solicitations or duplicate-address probes on the link
        conf = f"/proc/sys/net/ipv6/conf/{self.host_dev}/disable_ipv6"
        if os.path.exists(conf):
            Path(conf).write_text("1\n")
        _run([*self.exec_prefix(), "sysctl", "-q", "-w", f"net.ipv6.conf.{self.ns_dev}.disable_ipv6=1"], check=False)
        _run(["ip", "addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.host_dev])  # type: ignore[union-attr]
        _run(["ip", "link", "set", self.host_dev, "up"])
        _run(["ip", "-n", self.ns, "addr", "add", f"{self.ns_ip}/{self.subnet.prefixlen}", "dev", self.ns_dev])  # type: ignore[union-attr]
        _run(["ip", "-n", self.ns, "link", "set", self.ns_dev, "up"])
        _run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        tbf = ["tbf", "rate", f"{p['rate']}bit", "burst", str(p["burst"]), "limit", str(p["limit"])]
        _run(["tc", "qdisc", "add", "dev", self.host_dev, "root", *tbf])
        _run(["tc", "-n", self.ns, "qdisc", "add", "dev", self.ns_dev, "root", *tbf])
        self._start_delayer()
        # only now: with no program bound to the queue the kernel drops what it would queue
        self._in_ns("iptables-legacy", "-w", "-t", "raw", "-A", "PREROUTING", "-i", self.ns_dev, "-j", "NFQUEUE", "--queue-num", str(QUEUE))
        self.log(f"link: namespace {self.ns}, {self.host_dev} {self.host_ip} <-> {self.ns_dev} {self.ns_ip}, "
                 f"RTT {self.rtt_ms:g} ms (NFQUEUE, {self.delayer_info.get('priority')}), "
                 f"tbf {self.mbit:g} Mbit/s burst {p['burst']} B limit {p['limit']} B")

    def _start_delayer(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.delayer = subprocess.Popen(
            [*self.exec_prefix(), sys.executable, "-m", "bench.netdelay", "--queue", str(QUEUE), "--delay-ms", str(self.rtt_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, cwd=REPO, env=env)
        line = self._read_line(15)
        info = json.loads(line) if line else {}
        if not info.get("ready"):
            raise RuntimeError(f"the delay program did not start: {info.get('error') or line or 'no answer'}")
        self.delayer_info = info

    def _read_line(self, timeout: float) -> str:
        assert self.delayer is not None and self.delayer.stdout is not None
        ready, _, _ = select.select([self.delayer.stdout], [], [], timeout)
        if not ready:
            return ""
        return self.delayer.stdout.readline().strip()

    def delay_stats(self) -> dict[str, Any]:
        """The delay program's counters since the last call: packets, SYNs per port, hold times, drops."""
        if self.delayer is None or self.delayer.poll() is not None:
            raise RuntimeError("the delay program is gone: the link no longer has its round trip")
        assert self.delayer.stdin is not None
        self.delayer.stdin.write("stats\n")
        self.delayer.stdin.flush()
        line = self._read_line(10)
        if not line:
            raise RuntimeError("the delay program did not answer")
        return dict(json.loads(line))

    def _counter(self, name: str) -> int:
        return int(Path(f"/sys/class/net/{self.host_dev}/statistics/{name}").read_text())

    def mark(self) -> None:
        """Start counting the link's bytes and the delay program's counters afresh."""
        self._rx_mark, self._tx_mark = self._counter("rx_bytes"), self._counter("tx_bytes")
        self._cpu_mark = self.delayer_cpu_s()
        self.delay_stats()

    def since_mark(self) -> dict[str, Any]:
        rx, tx = self._counter("rx_bytes"), self._counter("tx_bytes")
        out = self.delay_stats()
        out["down_bytes"] = rx - self._rx_mark  # on the wire, server -> client (Ethernet frames)
        out["up_bytes"] = tx - self._tx_mark
        cpu = self.delayer_cpu_s()
        out["delay_cpu_s"] = round(cpu - self._cpu_mark, 3)
        return out

    def delayer_cpu_s(self) -> float:
        """CPU time (user + system) the delay program used so far: the link's own cost on this machine."""
        if self.delayer is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.delayer.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        if not self._made:
            return
        self._made = False
        if self.delayer is not None:
            if self.delayer.poll() is None:
                try:
                    assert self.delayer.stdin is not None
                    self.delayer.stdin.write("quit\n")
                    self.delayer.stdin.flush()
                    self.delayer.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    self.delayer.kill()
                    self.delayer.wait(timeout=5)
            self.delayer = None
        left = _teardown(self.ns, self.host_dev, self.log)
        if not left:
            self.log(f"link removed: namespace {self.ns}, veth {self.host_dev}/{self.ns_dev}, their qdiscs and rules")
