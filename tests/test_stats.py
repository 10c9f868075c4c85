"""`mirror-sync stats`: download statistics from real nginx access log lines.

The lines below are written exactly as nginx's predefined `combined` format writes them (pip's user
agent carries JSON, whose quotes nginx escapes as \\x22). One test runs a real nginx on loopback.
"""
from __future__ import annotations

import bz2
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from mirror_sync.config import Config, config_from_mapping
from mirror_sync.errors import ConfigError, LockedError, MirrorSyncError
from mirror_sync.observe import stats
from mirror_sync.observe.logparse import LineParser, Malformed, parse_filename
from mirror_sync.observe.stats import run_stats

UA = (
    "pip/24.0 {\\x22ci\\x22:null,\\x22cpu\\x22:\\x22x86_64\\x22,\\x22implementation\\x22:"
    "{\\x22name\\x22:\\x22CPython\\x22,\\x22version\\x22:\\x223.11.7\\x22},\\x22installer\\x22:"
    "{\\x22name\\x22:\\x22pip\\x22,\\x22version\\x22:\\x2224.0\\x22}}"
)
DAY = "2026-11-24"


def pkg(filename: str, prefix: str = "") -> str:
    """The URL path of a file in our layout: [prefix]/packages/<xx>/<yy>/<rest>/<filename>."""
    digest = hashlib.sha256(filename.encode()).hexdigest()
    return f"{prefix}/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


def line(
    path: str,
    status: int = 200,
    method: str = "GET",
    when: str = "24/Nov/2026:13:05:01 +0000",
    size: int = 51234,
    ip: str = "10.20.30.40",
    extra: str = "",
) -> str:
    return f'{ip} - - [{when}] "{method} {path} HTTP/1.1" {status} {size} "-" "{UA}"{extra}\n'


def wheel(name: str, version: str = "1.0", when: str = "24/Nov/2026:13:05:01 +0000") -> str:
    return line(pkg(f"{name}-{version}-py3-none-any.whl"), when=when)


@pytest.fixture()
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def make_config(tmp_path: Path, logs: Path, pattern: str = "access.log*", **stats_keys: Any) -> Config:
    data = {
        "directory": str(tmp_path / "mirror"),
        "upstream": "http://127.0.0.1:9/simple/",
        "statistics": {"access_log_pattern": str(logs / pattern), **stats_keys},
    }
    return config_from_mapping(data, tmp_path / "mirror.yml")


@pytest.fixture()
def config(tmp_path: Path, logs: Path) -> Config:
    return make_config(tmp_path, logs)


def out(config: Config) -> Path:
    return config.directory / "web" / "stats"


def project(config: Config, name: str) -> dict[str, Any]:
    data = json.loads((out(config) / "projects" / f"{name}.json").read_text())
    data.pop("generated")
    return data


def summary(config: Config) -> dict[str, Any]:
    return json.loads((out(config) / "summary.json").read_text())


def totals(config: Config) -> dict[str, int]:
    return summary(config)["totals"]


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- parsing


def test_parse_filename() -> None:
    assert parse_filename("foo-1.0-py3-none-any.whl") == ("foo", "1.0")
    assert parse_filename("Foo_Bar-2.0.post1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == (
        "foo-bar",
        "2.0.post1",
    )
    assert parse_filename("foo-1.0-1build-py3-none-any.whl") == ("foo", "1.0")
    assert parse_filename("zope.interface-6.0.tar.gz") == ("zope-interface", "6.0")
    assert parse_filename("foo-1.0+local.zip") == ("foo", "1.0+local")
    assert parse_filename("baz-0.1-py2.7.egg") == ("baz", "0.1")
    assert parse_filename("old-2.3.tar.bz2") == ("old", "2.3")
    assert parse_filename("README") is None
    assert parse_filename("..-1.0.tar.gz") is None


def test_parse_line_kinds() -> None:
    p = LineParser()
    hit = p.parse(wheel("foo").rstrip("\n"))
    assert hit is not None and (hit.day, hit.kind, hit.project, hit.version) == (DAY, "download", "foo", "1.0")
    assert p.parse(line(pkg("foo-1.0-py3-none-any.whl"), method="HEAD").rstrip("\n")) is None
    assert p.parse(line(pkg("foo-1.0-py3-none-any.whl"), status=404).rstrip("\n")) is None
    # UTC day: 23:30 at -02:00 is 01:30 the next day
    hit = p.parse(wheel("foo", when="24/Nov/2026:23:30:00 -0200").rstrip("\n"))
    assert hit is not None and hit.day == "2026-11-25"
    for bad in ("", "garbage", '10.0.0.1 - - [24/Nov/2026:13:05:01 +0000] "GET /packages/',
                line("/simple/", when="24/Foo/2026:13:05:01 +0000").rstrip("\n"),
                line("/simple/", when="31/Feb/2026:13:05:01 +0000").rstrip("\n")):
        with pytest.raises(Malformed):
            p.parse(bad)


# ----------------------------------------------------------------------------- counting


def test_counts_real_lines(config: Config, logs: Path) -> None:
    foo = "foo-1.0-py3-none-any.whl"
    text = "".join(
        [
            line(pkg(foo)),
            line(pkg("foo-1.0%2Blocal-py3-none-any.whl", prefix="/pypi")),  # percent-encoded, path prefix
            line(pkg("Foo_Bar-2.0.tar.gz")),  # name canonicalized
            line(pkg(foo) + ".metadata"),
            line("/simple/foo/"),
            line("/simple/foo/", status=304, size=0),
            line("/simple/"),
            line("/pypi/simple/Foo_Bar/index.v1_json"),
            line(pkg(foo), status=404, size=153),
            line(pkg(foo), method="HEAD", size=0),
            line(pkg(foo), status=206, size=65536),
            line(pkg(foo), status=304, size=0),
            line(pkg("foo-2.0-py3-none-any.whl"), status=500, size=0),
            line("/simple/foo/", method="POST", status=405),
            line("/simple/nope/", status=404),
            line(pkg(foo) + "?sha256=abc#frag"),
            line(pkg(foo), extra=' "-"'),  # "main" format: trailing $http_x_forwarded_for
            line(pkg(foo), extra=' "203.0.113.9" rt=0.004 uct="0.000"'),
            wheel("bar", "3.0", when="24/Nov/2026:23:30:00 -0200"),  # 2026-11-25 in UTC
            line(pkg("baz-0.1-py2.7.egg")),
            line(pkg("README")),  # under packages/ but no distribution: unattributed
            line("/packages/zz/yy/notahash/foo-1.0-py3-none-any.whl"),  # not our layout
            '198.51.100.1 - - [24/Nov/2026:13:05:02 +0000] "\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xFC\\x03\\x03" 400 157 "-" "-"\n',
            '198.51.100.1 - - [24/Nov/2026:13:05:02 +0000] "-" 400 0 "-" "-"\n',
            "garbage\n",
            "\n",
            '10.20.30.40 - - [24/Nov/2026:13:05:01 +0000] "GET /packages/\n',
            line("/simple/", when="24/Foo/2026:13:05:01 +0000"),
        ]
    )
    (logs / "access.log").write_bytes(text.encode() + b"\xff\xfe\x00 binary junk\n")
    result = run_stats(config).to_json()
    assert result["ok"] is True and result["failures"] == []
    assert result["lines_read"] == text.count("\n") + 1
    assert (result["downloads"], result["metadata"], result["pages"], result["malformed"]) == (8, 1, 4, 5)
    assert result["files_seen"] == result["files_read"] == 1
    assert result["output_directory"] == str(out(config))

    assert project(config, "foo") == {
        "project": "foo",
        "total": 5,
        "days": {
            DAY: {
                "total": 5,
                "versions": {"1.0": 4, "1.0+local": 1},
                "files": {"foo-1.0+local-py3-none-any.whl": 1, foo: 4},
                "metadata": 1,
                "pages": 2,
            }
        },
    }
    assert project(config, "foo-bar")["days"] == {
        DAY: {"total": 1, "versions": {"2.0": 1}, "files": {"Foo_Bar-2.0.tar.gz": 1}, "metadata": 0, "pages": 1}
    }
    assert project(config, "bar")["days"] == {
        "2026-11-25": {"total": 1, "versions": {"3.0": 1}, "files": {"bar-3.0-py3-none-any.whl": 1}, "metadata": 0, "pages": 0}
    }
    assert project(config, "baz")["total"] == 1
    assert sorted(p.name for p in (out(config) / "projects").iterdir()) == ["bar.json", "baz.json", "foo-bar.json", "foo.json"]
    s = summary(config)
    assert s["totals"] == {
        "downloads": 8,
        "metadata": 1,
        "pages": 4,
        "partial": 1,
        "not_modified": 1,
        "unattributed": 1,
        "lines": result["lines_read"],
        "malformed": 5,
    }
    assert s["days"] == {DAY: {"downloads": 7, "metadata": 1, "pages": 4}, "2026-11-25": {"downloads": 1, "metadata": 0, "pages": 0}}
    assert s["top"]["all_time"][0] == {"project": "foo", "downloads": 5}
    assert no_temp_files(out(config))
    # served by nginx: world-readable
    assert (out(config) / "summary.json").stat().st_mode & 0o777 == 0o644
    assert (out(config) / "projects" / "foo.json").stat().st_mode & 0o777 == 0o644


def test_incremental_never_counts_twice(config: Config, logs: Path) -> None:
    log = logs / "access.log"
    log.write_text(wheel("foo") * 3)
    assert run_stats(config).to_json()["downloads"] == 3
    with log.open("a") as f:
        f.write(wheel("foo") * 2 + wheel("bar"))
    r = run_stats(config).to_json()
    assert (r["lines_read"], r["downloads"], r["projects_written"]) == (3, 3, 2)
    before = project(config, "foo")
    r = run_stats(config).to_json()
    assert (r["lines_read"], r["downloads"], r["files_read"], r["projects_written"]) == (0, 0, 0, 0)
    assert project(config, "foo") == before
    assert before["total"] == 5 and project(config, "bar")["total"] == 1
    assert r["totals"]["downloads"] == 6


def test_partial_last_line_is_left_for_the_next_run(config: Config, logs: Path) -> None:
    log = logs / "access.log"
    whole = wheel("foo")
    log.write_text(wheel("bar") + whole[:40])  # nginx is in the middle of writing a line
    r = run_stats(config).to_json()
    assert (r["lines_read"], r["downloads"], r["malformed"]) == (1, 1, 0)
    with log.open("a") as f:
        f.write(whole[40:])
    r = run_stats(config).to_json()
    assert (r["lines_read"], r["downloads"], r["malformed"]) == (1, 1, 0)
    assert project(config, "foo")["total"] == 1
    assert totals(config)["lines"] == 2


def test_many_small_chunks_count_the_same(config: Config, logs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "CHUNK_BYTES", 100)  # shorter than one line: every line its own commit
    (logs / "access.log").write_text(wheel("foo") * 7 + "garbage\n" + wheel("bar"))
    r = run_stats(config).to_json()
    assert (r["lines_read"], r["downloads"], r["malformed"]) == (9, 8, 1)
    assert project(config, "foo")["total"] == 7


def test_rotation_between_runs(config: Config, logs: Path) -> None:
    """logrotate with delaycompress: access.log -> access.log.1 -> access.log.2.gz."""
    log, log1, log2gz = logs / "access.log", logs / "access.log.1", logs / "access.log.2.gz"
    log.write_text(wheel("a") * 2)
    assert run_stats(config).to_json()["downloads"] == 2

    # more lines, then rotation: nginx keeps writing to the renamed file until it reopens its logs
    with log.open("a") as f:
        f.write(wheel("b"))
    os.rename(log, log1)
    with log1.open("a") as f:
        f.write(wheel("c"))
    log.write_text(wheel("d"))
    r = run_stats(config).to_json()
    assert (r["downloads"], r["files_read"]) == (3, 2)

    # a line written to access.log.1 after it was read, then the second rotation compresses it:
    # the half-read log is finished from the .gz, exactly once
    with log1.open("a") as f:
        f.write(wheel("e"))
    log2gz.write_bytes(gzip.compress(log1.read_bytes()))
    log1.unlink()
    os.rename(log, log1)
    log.write_text(wheel("f"))
    r = run_stats(config).to_json()
    assert (r["downloads"], r["files_read"]) == (2, 2)

    # nothing new: the compressed file is recognised without reading it again
    r = run_stats(config).to_json()
    assert (r["downloads"], r["lines_read"], r["files_read"]) == (0, 0, 0)
    assert {p: project(config, p)["total"] for p in "abcdef"} == {"a": 2, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1}
    assert totals(config)["downloads"] == 7


def test_first_run_over_rotated_history(config: Config, logs: Path) -> None:
    """Enabling stats on a host with a week of logs, in every compression logrotate can use."""
    (logs / "access.log").write_text(wheel("a"))
    (logs / "access.log.1").write_text(wheel("b") * 2)
    (logs / "access.log.2.gz").write_bytes(gzip.compress(wheel("c").encode() * 3))
    (logs / "access.log.3.bz2").write_bytes(bz2.compress(wheel("d").encode() * 4))
    (logs / "access.log.4.xz").write_bytes(lzma.compress(wheel("e").encode() * 5))
    (logs / "error.log").write_text("2026/11/24 13:05:01 [error] 1#1: *1 open() failed\n")  # not matched
    r = run_stats(config).to_json()
    assert (r["files_seen"], r["files_read"], r["downloads"], r["malformed"]) == (5, 5, 15, 0)
    assert run_stats(config).to_json()["lines_read"] == 0


def test_copytruncate_and_inode_reuse(config: Config, logs: Path) -> None:
    """Same inode, new content: told apart by the head bytes, not by the inode."""
    log = logs / "access.log"
    log.write_text(wheel("a", when="24/Nov/2026:10:00:00 +0000") * 2)
    run_stats(config).to_json()
    ino = log.stat().st_ino
    shutil.copyfile(log, logs / "access.log.1")  # logrotate copytruncate: copy, then truncate in place
    with log.open("r+") as f:
        f.truncate(0)
        f.write(wheel("b", when="24/Nov/2026:11:00:00 +0000"))
    assert log.stat().st_ino == ino
    r = run_stats(config).to_json()
    assert (r["downloads"], r["files_read"]) == (1, 1)
    assert project(config, "a")["total"] == 2 and project(config, "b")["total"] == 1


def test_copy_in_progress_is_not_a_new_log(config: Config, logs: Path) -> None:
    """A rotated copy that so far holds only a prefix of a known log adds nothing."""
    log = logs / "access.log"
    content = "".join(wheel("a", when=f"24/Nov/2026:10:00:{i:02d} +0000") for i in range(40))
    assert len(content) > stats.HEAD_BYTES
    log.write_text(content)
    assert run_stats(config).to_json()["downloads"] == 40
    (logs / "access.log.1").write_text(content[:300])  # cut mid-line, like a copy being written
    assert run_stats(config).to_json()["downloads"] == 0
    (logs / "access.log.1").write_text(content)
    assert run_stats(config).to_json()["downloads"] == 0


def test_rotation_mid_compression(config: Config, logs: Path) -> None:
    """logrotate renamed access.log.1 to access.log.2 and is still writing access.log.2.gz."""
    log1 = logs / "access.log.1"
    log1.write_text(wheel("a") * 50)
    assert run_stats(config).to_json()["downloads"] == 50
    log2 = logs / "access.log.2"
    os.rename(log1, log2)
    packed = gzip.compress(log2.read_bytes())
    (logs / "access.log.2.gz").write_bytes(packed[: len(packed) // 2])
    r = run_stats(config).to_json()
    assert r["ok"] is True and r["downloads"] == 0
    assert r["incomplete"] == [str(logs / "access.log.2.gz")]
    (logs / "access.log.2.gz").write_bytes(packed)
    log2.unlink()
    r = run_stats(config).to_json()
    assert (r["downloads"], r["incomplete"]) == (0, [])
    assert totals(config)["downloads"] == 50


def test_unreadable_file_is_a_failure_not_fatal(config: Config, logs: Path) -> None:
    (logs / "access.log").write_text(wheel("a"))
    (logs / "access.log.5.gz").write_bytes(b"this is not gzip data\n")
    r = run_stats(config).to_json()
    assert r["ok"] is False
    assert [f["file"] for f in r["failures"]] == [str(logs / "access.log.5.gz")]
    assert r["downloads"] == 1 and project(config, "a")["total"] == 1


def test_output_is_regenerated_from_state(config: Config, logs: Path) -> None:
    (logs / "access.log").write_text(wheel("a") + wheel("b") + line(pkg("a-1.0-py3-none-any.whl") + ".metadata"))
    run_stats(config).to_json()
    before = {p: project(config, p) for p in ("a", "b")}
    before_totals = totals(config)
    shutil.rmtree(out(config))
    r = run_stats(config).to_json()
    assert (r["lines_read"], r["projects_written"]) == (0, 2)
    assert {p: project(config, p) for p in ("a", "b")} == before
    assert totals(config) == before_totals
    assert no_temp_files(out(config))


def test_output_directory_from_config(tmp_path: Path, logs: Path) -> None:
    config = make_config(tmp_path, logs, output_directory="public/stats")  # relative to the config file
    (logs / "access.log").write_text(wheel("a"))
    r = run_stats(config).to_json()
    assert r["output_directory"] == str(tmp_path / "public" / "stats")
    assert (tmp_path / "public" / "stats" / "projects" / "a.json").is_file()
    assert (config.directory / "stats.sqlite").is_file()


def test_top_projects_by_window(config: Config, logs: Path) -> None:
    (logs / "access.log").write_text(
        wheel("today", when="24/Nov/2026:09:00:00 +0000")
        + wheel("week", when="20/Nov/2026:09:00:00 +0000") * 3
        + wheel("month", when="01/Nov/2026:09:00:00 +0000") * 4
        + wheel("old", when="01/Oct/2026:09:00:00 +0000") * 5
    )
    run_stats(config, today=date(2026, 11, 24))
    top = {k: [(e["project"], e["downloads"]) for e in v] for k, v in summary(config)["top"].items()}
    assert top == {
        "last_1_days": [("today", 1)],
        "last_7_days": [("week", 3), ("today", 1)],
        "last_30_days": [("month", 4), ("week", 3), ("today", 1)],
        "all_time": [("old", 5), ("month", 4), ("week", 3), ("today", 1)],
    }
    assert summary(config)["first_day"] == "2026-10-01" and summary(config)["last_day"] == "2026-11-24"


def test_no_pattern_is_a_configuration_error(tmp_path: Path) -> None:
    config = config_from_mapping({"directory": str(tmp_path), "upstream": "http://127.0.0.1:9/"}, tmp_path / "m.yml")
    with pytest.raises(ConfigError, match="statistics.access_log_pattern"):
        run_stats(config).to_json()


def test_no_logs_yet(config: Config) -> None:
    r = run_stats(config).to_json()
    assert (r["ok"], r["files_seen"], r["lines_read"]) == (True, 0, 0)
    assert summary(config)["totals"]["downloads"] == 0


def test_damaged_state_is_one_sentence(config: Config, logs: Path) -> None:
    (logs / "access.log").write_text(wheel("a"))
    config.directory.mkdir(parents=True)
    (config.directory / "stats.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(MirrorSyncError, match="cannot use the statistics state"):
        run_stats(config).to_json()


def test_concurrent_run_is_refused(config: Config, logs: Path) -> None:
    (logs / "access.log").write_text(wheel("a"))
    config.directory.mkdir(parents=True)
    fd = os.open(str(config.directory / ".stats.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LockedError):
            run_stats(config).to_json()
    finally:
        os.close(fd)
    assert run_stats(config).to_json()["downloads"] == 1


# ----------------------------------------------------------------------------- real nginx

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """nginx on 127.0.0.1 serving a small web/ tree at / and under /pypi/; yields (url, web, logs)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    nginx_bin = str(NGINX)
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    web = tmp_path / "web"
    web.mkdir()
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the pytest temp tree
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
{user}
worker_processes 1;
error_log {prefix}/logs/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    types {{ application/octet-stream whl gz; text/html html; }}
    access_log {prefix}/logs/access.log combined;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    server {{
        listen 127.0.0.1:{port};
        root {web};
        location /pypi/ {{ alias {web}/; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        [nginx_bin, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):  # bounded wait for the listener
            if proc.poll() is not None:
                pytest.fail(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("nginx did not listen")
        yield f"http://127.0.0.1:{port}", web, prefix / "logs"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finishes requests, closes the log
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def _put(web: Path, url_path: str, data: bytes) -> None:
    target = web / url_path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_real_nginx_log(nginx: tuple[str, Path, Path], tmp_path: Path) -> None:
    import requests

    url, web, logdir = nginx
    whl = pkg("demo_pkg-1.0-py3-none-any.whl")
    local = pkg("demo_pkg-1.1+corp-py3-none-any.whl")
    sdist = pkg("demo-pkg-1.0.tar.gz")
    _put(web, whl, b"W" * 5000)
    _put(web, whl + ".metadata", b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    _put(web, local, b"L" * 100)
    _put(web, sdist, b"S" * 300)
    _put(web, "/simple/demo-pkg/index.html", b"<html></html>")
    _put(web, "/simple/index.html", b"<html></html>")

    with requests.Session() as http:
        http.trust_env = False  # never a proxy: loopback only
        http.headers["User-Agent"] = 'pip/24.0 {"ci":null,"cpu":"x86_64"}'
        assert http.get(url + "/simple/").status_code == 200
        page = http.get(url + "/simple/demo-pkg/")
        assert page.status_code == 200
        assert http.get(url + "/simple/demo-pkg/", headers={"If-None-Match": page.headers["ETag"]}).status_code == 304
        assert http.get(url + whl + ".metadata").status_code == 200
        assert http.get(url + whl).status_code == 200
        assert http.get(url + "/pypi" + whl).status_code == 200
        assert http.get(url + local.replace("+", "%2B")).status_code == 200
        assert http.get(url + "/pypi" + sdist + "?x=1").status_code == 200
        assert http.get(url + whl, headers={"Range": "bytes=0-99"}).status_code == 206
        assert http.head(url + whl).status_code == 200
        assert http.get(url + pkg("missing-1.0.tar.gz")).status_code == 404
    # the access log is complete once nginx has stopped; stop it now (the fixture's finally is a no-op then)

    config = config_from_mapping(
        {
            "directory": str(tmp_path / "mirror"),
            "upstream": "http://127.0.0.1:9/simple/",
            "statistics": {"access_log_pattern": str(logdir / "access.log*")},
        },
        tmp_path / "mirror.yml",
    )
    pid = int((logdir.parent / "nginx.pid").read_text())
    os.kill(pid, signal.SIGQUIT)
    for _ in range(600):  # bounded: wait until the master has exited and removed its pid file
        if not (logdir.parent / "nginx.pid").exists():
            break
        time.sleep(0.05)
    lines = (logdir / "access.log").read_text().splitlines()
    assert len(lines) == 11
    r = run_stats(config).to_json()
    assert r["ok"] and r["malformed"] == 0 and r["lines_read"] == 11
    assert (r["downloads"], r["metadata"], r["pages"]) == (4, 1, 3)
    demo = project(config, "demo-pkg")
    day = next(iter(demo["days"]))
    assert demo["days"][day] == {
        "total": 4,
        "versions": {"1.0": 3, "1.1+corp": 1},
        "files": {"demo-pkg-1.0.tar.gz": 1, "demo_pkg-1.0-py3-none-any.whl": 2, "demo_pkg-1.1+corp-py3-none-any.whl": 1},
        "metadata": 1,
        "pages": 2,
    }
    assert summary(config)["totals"]["partial"] == 1
    assert run_stats(config).to_json()["lines_read"] == 0
