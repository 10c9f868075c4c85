"""Pure helpers of the benchmark (bench/): the floor, the size distribution, the link's addresses and
tbf settings, the delay program's netlink messages, the access-log counts. No namespaces, no network."""
from __future__ import annotations

import hashlib
import io
import ipaddress
import random
import socket
import statistics
import struct
import zipfile
from pathlib import Path

import pytest

from bench import netdelay
from bench.floor import floor, utilisation
from bench.netns import CANDIDATES, pick_subnet, summary, tbf_params
from bench.nginx import parse_log
from bench.upstream import Shape, Upstream
from bench.wheels import LOGNORMAL, TINY, SizeModel, big_positions, big_size, build_wheel, lognormal_size, payload_for


def test_floor_is_the_bandwidth_when_bytes_dominate() -> None:
    # the upstream: 1.68 GB over 200 Mbit/s is 67.2 s; 9,250 files x 50 ms / 8 workers is less
    f = floor(1_680_000_000, 200, 9_250, 50, 8)
    assert f.bound == "bytes"
    assert f.seconds == pytest.approx(67.2)
    assert f.round_trips_s == pytest.approx(57.8125)
    assert f.ratio(116.9) == pytest.approx(116.9 / 67.2)


def test_floor_is_the_round_trips_when_requests_dominate() -> None:
    f = floor(1_000_000, 200, 20_000, 50, 10)
    assert f.bound == "round trips"
    assert f.seconds == pytest.approx(100.0)
    assert f.transfer_s == pytest.approx(0.04)


def test_floor_rejects_no_bandwidth_or_workers() -> None:
    with pytest.raises(ValueError):
        floor(1, 0, 1, 50, 1)
    with pytest.raises(ValueError):
        floor(1, 200, 1, 50, 0)


def test_utilisation() -> None:
    assert utilisation(25_000_000, 1.0, 200) == pytest.approx(1.0)
    assert utilisation(12_500_000, 2.0, 200) == pytest.approx(0.25)
    assert utilisation(1, 0.0, 200) == 0.0


def test_lognormal_sizes_have_a_median_near_100_kb() -> None:
    rng = random.Random(1)
    sizes = [lognormal_size(rng, LOGNORMAL) for _ in range(20_000)]
    assert 90_000 <= statistics.median(sizes) <= 110_000
    assert min(sizes) >= LOGNORMAL.min_bytes
    assert max(sizes) < LOGNORMAL.big_bytes  # only the chosen few are big
    # sigma 1: the mean is ~1.65x the median, and a long tail above 1 MB
    assert 1.4 <= statistics.mean(sizes) / statistics.median(sizes) <= 1.9
    assert 0.005 <= sum(s > 1_000_000 for s in sizes) / len(sizes) <= 0.05


def test_big_files_few_spread_and_at_least_20_mb() -> None:
    assert LOGNORMAL.big_count(9_250) == 5  # the upstream: five in 9,250
    assert LOGNORMAL.big_count(100) == LOGNORMAL.big_min
    assert TINY.big_count(100_000) == 0
    pos = big_positions(9_250, LOGNORMAL)
    assert len(pos) == 5 and pos == sorted(set(pos)) and all(0 <= p < 9_250 for p in pos)
    assert pos[0] > 0 and pos[-1] < 9_249  # spread, not bunched at one end
    assert big_positions(2, LOGNORMAL) == [0, 1]  # never more than there are files
    rng = random.Random(3)
    assert all(20_000_000 <= big_size(rng, LOGNORMAL) < 40_000_000 for _ in range(100))


def test_payload_makes_a_wheel_of_about_the_size_asked() -> None:
    for size in (5_000, 100_000, 2_000_000):
        w = build_wheel("demo-pkg", "1.0", payload=payload_for(size, "demo 1.0"))
        assert abs(len(w.data) - size) < 600
    assert payload_for(10, "t").startswith(b"# t\n")  # smaller than a wheel can be: just the header


SMALL = SizeModel("lognormal", median_bytes=5_000, min_bytes=1_500, big_bytes=60_000, big_every=50, big_min=2)


def _shape_of(up: Upstream) -> list[tuple[str, str, str]]:
    return [(p.name, f.version, f.filename) for p in up.projects.values() for f in p.files]


def test_upstream_sizes_are_seeded_and_leave_the_projects_as_they_are(tmp_path: Path) -> None:
    a = Upstream.generate(tmp_path / "a", "http://x", Shape(40, sizes=SMALL))
    b = Upstream.generate(tmp_path / "b", "http://x", Shape(40, sizes=SMALL))
    tiny = Upstream.generate(tmp_path / "t", "http://x", Shape(40))
    assert [f.sha256 for p in a.projects.values() for f in p.files] == [f.sha256 for p in b.projects.values() for f in p.files]
    assert _shape_of(a) == _shape_of(tiny)  # the same projects, releases and files; only the sizes differ
    sizes = a.file_sizes()
    big = [s for s in sizes if s >= SMALL.big_bytes]
    assert len(big) == SMALL.big_count(len(sizes)) >= 2
    assert statistics.median(sizes) > 2 * statistics.median(tiny.file_sizes())
    f = a.largest_files(1)[0]
    data = (tmp_path / "a" / f.path).read_bytes()
    assert len(data) == f.size and hashlib.sha256(data).hexdigest() == f.sha256
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # still a valid wheel after it was made big
        assert zf.testzip() is None
    written = sum(1 for p in (tmp_path / "a" / "packages").rglob("*.whl"))
    assert written == len(sizes)  # the small files the big ones replaced are gone


def test_pick_subnet_takes_the_first_free_slash_30() -> None:
    fleet = ipaddress.IPv4Network("198.18.0.0/24")  # a fleet test's bridge: a /24 route is no collision
    assert pick_subnet([ipaddress.IPv4Address("198.18.0.1")], [fleet], []) == CANDIDATES[0]
    assert CANDIDATES[0] == ipaddress.IPv4Network("198.18.0.200/30")


def test_pick_subnet_skips_used_addresses_routes_and_neighbours() -> None:
    used_addr = [ipaddress.IPv4Address("198.18.0.201")]
    assert pick_subnet(used_addr, [], []) == ipaddress.IPv4Network("198.18.0.204/30")
    another_bench = [ipaddress.IPv4Network("198.18.0.204/30")]
    assert pick_subnet(used_addr, another_bench, []) == ipaddress.IPv4Network("198.18.0.208/30")
    assert pick_subnet([], [], [ipaddress.IPv4Address("198.18.0.202")]) == ipaddress.IPv4Network("198.18.0.204/30")
    everything = [ipaddress.IPv4Network("198.18.0.192/26")]
    assert pick_subnet([], everything, []) is None


def test_tbf_params() -> None:
    p = tbf_params(200, 50)
    assert p["rate"] == 200_000_000
    assert p["burst"] >= 65_536  # one GSO packet passes whole
    assert p["limit"] == 1_250_000  # one bandwidth-delay product
    slow = tbf_params(10, 10)
    assert slow["limit"] >= 4 * slow["burst"]


def test_summary() -> None:
    assert summary([]) == {}
    s = summary([3.0, 1.0, 2.0])
    assert (s["min"], s["median"], s["max"], s["n"]) == (1.0, 2.0, 3.0, 3)


def _ipv4_tcp(flags: int, dport: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, socket.IPPROTO_TCP, 0, b"\xc6\x12\x00\xc9", b"\xc6\x12\x00\xca")
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    return ip + tcp


def test_syn_port_sees_only_a_connection_s_first_syn() -> None:
    assert netdelay.syn_port(memoryview(_ipv4_tcp(0x02, 80))) == 80
    assert netdelay.syn_port(memoryview(_ipv4_tcp(0x12, 80))) is None  # SYN-ACK
    assert netdelay.syn_port(memoryview(_ipv4_tcp(0x10, 80))) is None  # ACK
    assert netdelay.syn_port(memoryview(b"\x45" + b"\0" * 10)) is None  # truncated


def _packet_message(packet_id: int, payload: bytes, stamp: tuple[int, int] | None = None) -> bytes:
    attrs = netdelay._attr(netdelay.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 0))
    if stamp is not None:
        attrs += netdelay._attr(netdelay.NFQA_TIMESTAMP, struct.pack("!QQ", *stamp))
    attrs += netdelay._attr(netdelay.NFQA_PAYLOAD, payload)
    return netdelay.message(netdelay.NFQNL_MSG_PACKET, 0, attrs, 0, 0)


def test_packet_messages_parse_back() -> None:
    data = _packet_message(7, _ipv4_tcp(0x02, 81), (1_700_000_000, 250_000)) + _packet_message(8, _ipv4_tcp(0x10, 81))
    parsed = []
    for kind, payload in netdelay.messages(memoryview(data)):
        assert kind == (netdelay.NFNL_SUBSYS_QUEUE << 8) | netdelay.NFQNL_MSG_PACKET
        parsed.append(netdelay.parse_packet(payload[4:]))
    assert [(q.packet_id, q.syn_port) for q in parsed if q] == [(7, 81), (8, None)]
    assert parsed[0] is not None and parsed[0].stamp == pytest.approx(1_700_000_000.25)


def test_verdict_batch_message() -> None:
    msg = netdelay.verdict_batch(3, 42, 9)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", msg)
    assert length == len(msg) and seq == 9 and flags == netdelay.NLM_F_REQUEST
    assert kind == (netdelay.NFNL_SUBSYS_QUEUE << 8) | netdelay.NFQNL_MSG_VERDICT_BATCH
    assert struct.unpack_from("!H", msg, 18)[0] == 3  # nfgenmsg res_id: the queue
    assert struct.unpack_from("!II", msg, 24) == (netdelay.NF_ACCEPT, 42)


def test_stats_count_syns_and_late_packets() -> None:
    st = netdelay.Stats(packets=4, released=3, syns={80: 2}, hold_min_ms=50.1, hold_max_ms=57.0, hold_sum_ms=157.2, late=[1, 1, 0])
    out = st.as_json(50.0, {"queue_dropped": 0})
    assert out["syns"] == {"80": 2} and out["late_5ms"] == 1 and out["hold_mean_ms"] == pytest.approx(52.4)


def test_parse_log_counts_requests_errors_bytes_and_connections() -> None:
    log = (b"200 1234 1 GET /simple/a/\n200 100 1 GET /packages/x.whl\n"
           b"404 50 2 GET /nothing\n304 0 3 GET /simple/\n")
    t = parse_log(log)
    assert (t.requests, t.errors, t.bytes_sent, t.connections) == (4, 1, 1384, 3)


def test_wake_at_the_due_time_and_at_most_once_per_quantum() -> None:
    q = 0.001
    assert netdelay.wake_at(10.0, 0.0, q) == pytest.approx(10.0)  # quiet link: exactly when it is due
    assert netdelay.wake_at(10.0, 9.9999, q) == pytest.approx(10.0009)  # busy: no sooner than a quantum on
