"""The Prometheus textfile: well-formed, merged across commands, written atomically."""
from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mirror_sync.config import config_from_mapping
from mirror_sync.errors import FilesystemError
from mirror_sync.observe import metrics
from mirror_sync.observe.metrics import write_textfile
from mirror_sync.observe.stats import run_stats

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_RE = re.compile(rf"^(?P<name>{NAME})(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$")
LABEL_RE = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$')
Key = tuple[str, tuple[tuple[str, str], ...]]
metrics_key = tuple[str, metrics.Labels]


def parse(text: str) -> tuple[dict[Key, float], dict[str, str]]:
    """A strict parser of the text exposition format as node_exporter's textfile collector reads it."""
    assert text.endswith("\n"), "the file must end with a newline"
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[Key, float] = {}
    finished: set[str] = set()  # families whose samples are over: they must not reappear
    current = None
    for line in text.splitlines():
        assert line == line.strip() and line, f"stray whitespace or empty line: {line!r}"
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name, rest = line[2:6], *line[7:].split(" ", 1)
            assert re.fullmatch(NAME, name), line
            if kind == "HELP":
                assert name not in helps and rest, line
                helps[name] = rest
            else:
                assert name not in types and name not in {k[0] for k in samples}, f"TYPE after samples: {line}"
                assert rest in ("gauge", "counter", "untyped"), line
                types[name] = rest
            if current is not None and current != name:
                finished.add(current)
            current = name
            continue
        assert not line.startswith("#"), line
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        name = m.group("name")
        assert name in types and name in helps, f"sample without HELP/TYPE: {line}"
        assert name == current and name not in finished, f"samples of {name} are not contiguous"
        labels = []
        if m.group("labels"):
            for part in m.group("labels").split(","):
                lm = LABEL_RE.match(part)
                assert lm, f"bad label {part!r} in {line!r}"
                labels.append((lm.group(1), lm.group(2)))
        key = (name, tuple(sorted(labels)))
        assert key not in samples, f"duplicate series {line}"
        value = float(m.group("value"))  # raises on a malformed value
        if types[name] == "counter":
            assert name.endswith("_total") and value >= 0
        samples[key] = value
    return samples, types


def val(samples: dict[Key, float], name: str, command: str | None = None) -> float:
    return samples[(name, (("command", command),) if command else ())]


SYNC: dict[str, Any] = {
    "command": "sync", "ok": True, "dry_run": False, "upstream": "http://127.0.0.1:9/simple/",
    "directory": "/srv/pypi-mirror", "started": "2026-11-24T13:00:00Z", "finished": "2026-11-24T13:00:02Z",
    "duration_s": 1.5, "upstream_serial": 125, "mirror_serial": 123,
    "projects": {"total": 10, "synced": 2, "deleted": 1, "failed": 0},
    "files": {"total": 30, "downloaded": 3, "deleted": 1, "failed": 0, "bytes_total": 123456, "bytes_downloaded": 2345},
    "changed": True, "failures": [],
}
STATUS: dict[str, Any] = {
    "command": "status", "directory": "/srv/pypi-mirror", "upstream": "http://127.0.0.1:9/simple/",
    "last_sync_started": "2026-11-24T13:00:00Z", "last_sync_finished": "2026-11-24T13:00:02Z",
    "last_success": "2026-11-24T13:00:02Z", "last_result": "ok", "upstream_serial": 125, "mirror_serial": 123,
    "lag_serials": 2, "lag_seconds": 42.5, "projects": 10, "files": 30, "bytes": 123456,
}
VERIFY: dict[str, Any] = {
    "command": "verify", "ok": False, "full": True, "checked_pages": 10, "checked_files": 30,
    "missing": ["packages/aa/bb/cc/x-1.0.tar.gz"], "corrupt": [], "orphans": ["packages/dd/ee/ff/y.whl", "z"],
    "repaired": 0, "removed": 0, "failures": [],
}
STATS: dict[str, Any] = {
    "command": "stats", "ok": True, "finished": "2026-11-24T13:10:00Z", "duration_s": 0.25, "lines_read": 1000,
    "downloads": 700, "malformed": 3,
    "totals": {"downloads": 9000, "metadata": 50, "pages": 4000, "lines": 20000, "malformed": 7},
    "failures": [],
}
T_SYNC = datetime(2026, 11, 24, 13, 0, 2, tzinfo=timezone.utc).timestamp()
T_STATS = datetime(2026, 11, 24, 13, 10, 0, tzinfo=timezone.utc).timestamp()


def read(directory: Path) -> dict[Key, float]:
    text = (directory / "mirror_sync.prom").read_text()
    return parse(text)[0]


def test_sync_with_status(tmp_path: Path) -> None:
    path = write_textfile(tmp_path, "sync", SYNC, STATUS)
    assert path == tmp_path / "mirror_sync.prom"
    samples, types = parse(path.read_text())
    assert val(samples, "mirror_sync_last_success_timestamp_seconds", "sync") == T_SYNC
    assert val(samples, "mirror_sync_last_run_timestamp_seconds", "sync") == T_SYNC
    assert val(samples, "mirror_sync_last_run_success", "sync") == 1
    assert val(samples, "mirror_sync_last_run_duration_seconds", "sync") == 1.5
    assert val(samples, "mirror_sync_last_run_files_downloaded", "sync") == 3
    assert val(samples, "mirror_sync_last_run_files_deleted", "sync") == 1
    assert val(samples, "mirror_sync_last_run_bytes_downloaded", "sync") == 2345
    assert val(samples, "mirror_sync_last_run_failures", "sync") == 0
    assert val(samples, "mirror_sync_upstream_serial") == 125
    assert val(samples, "mirror_sync_mirror_serial") == 123
    assert val(samples, "mirror_sync_lag_serials") == 2
    assert val(samples, "mirror_sync_lag_seconds") == 42.5
    assert (val(samples, "mirror_sync_projects"), val(samples, "mirror_sync_files"), val(samples, "mirror_sync_bytes")) == (10, 30, 123456)
    assert set(types.values()) == {"gauge"}
    assert "mirror_sync_bytes 123456\n" in path.read_text()  # integers without exponent or ".0"


def test_commands_do_not_clobber_each_other(tmp_path: Path) -> None:
    write_textfile(tmp_path, "sync", SYNC, STATUS)
    write_textfile(tmp_path, "stats", STATS, None)
    write_textfile(tmp_path, "verify", VERIFY, None)
    samples = read(tmp_path)
    assert val(samples, "mirror_sync_last_success_timestamp_seconds", "sync") == T_SYNC
    assert val(samples, "mirror_sync_last_run_files_downloaded", "sync") == 3
    assert val(samples, "mirror_sync_lag_serials") == 2  # no status given: the mirror's state is kept
    assert val(samples, "mirror_sync_last_success_timestamp_seconds", "stats") == T_STATS
    assert val(samples, "mirror_sync_last_run_log_lines", "stats") == 1000
    assert val(samples, "mirror_sync_last_run_downloads_counted", "stats") == 700
    assert val(samples, "mirror_sync_last_run_log_lines_malformed", "stats") == 3
    assert val(samples, "mirror_sync_stats_downloads_total") == 9000
    assert val(samples, "mirror_sync_stats_log_lines_total") == 20000
    assert val(samples, "mirror_sync_last_run_success", "verify") == 0
    assert val(samples, "mirror_sync_last_run_files_missing", "verify") == 1
    assert val(samples, "mirror_sync_last_run_files_orphaned", "verify") == 2
    assert val(samples, "mirror_sync_last_run_files_checked", "verify") == 30
    assert ("mirror_sync_last_success_timestamp_seconds", (("command", "verify"),)) not in samples  # never succeeded
    # a new sync replaces only its own values
    write_textfile(tmp_path, "sync", {**SYNC, "files": {**SYNC["files"], "downloaded": 0}}, {**STATUS, "lag_serials": 0})
    samples = read(tmp_path)
    assert val(samples, "mirror_sync_last_run_files_downloaded", "sync") == 0
    assert val(samples, "mirror_sync_lag_serials") == 0
    assert val(samples, "mirror_sync_last_run_files_missing", "verify") == 1
    assert val(samples, "mirror_sync_stats_downloads_total") == 9000


def test_failed_run_keeps_last_success(tmp_path: Path) -> None:
    write_textfile(tmp_path, "sync", SYNC, STATUS)
    failed = {
        **SYNC,
        "ok": False,
        "finished": "2026-11-24T14:00:00Z",
        "projects": {**SYNC["projects"], "failed": 2},
        "failures": [{"project": "a", "error": "x"}, {"project": "b", "error": "y"}],
    }
    write_textfile(tmp_path, "sync", failed, {**STATUS, "lag_serials": 40})
    samples = read(tmp_path)
    assert val(samples, "mirror_sync_last_success_timestamp_seconds", "sync") == T_SYNC
    assert val(samples, "mirror_sync_last_run_timestamp_seconds", "sync") == T_SYNC + 3598
    assert val(samples, "mirror_sync_last_run_success", "sync") == 0
    assert val(samples, "mirror_sync_last_run_failures", "sync") == 2
    assert val(samples, "mirror_sync_lag_serials") == 40


def test_sync_without_status_uses_its_summary(tmp_path: Path) -> None:
    write_textfile(tmp_path, "sync", SYNC, None)
    samples = read(tmp_path)
    assert val(samples, "mirror_sync_upstream_serial") == 125
    assert val(samples, "mirror_sync_lag_serials") == 2
    assert val(samples, "mirror_sync_files") == 30
    assert ("mirror_sync_lag_seconds", ()) not in samples


def test_dry_run_is_not_recorded(tmp_path: Path) -> None:
    write_textfile(tmp_path, "sync", {**SYNC, "dry_run": True}, STATUS)
    assert not (tmp_path / "mirror_sync.prom").exists()
    write_textfile(tmp_path, "sync", SYNC, STATUS)
    before = (tmp_path / "mirror_sync.prom").read_text()
    write_textfile(tmp_path, "sync", {**SYNC, "dry_run": True, "finished": "2026-11-25T00:00:00Z"}, STATUS)
    assert (tmp_path / "mirror_sync.prom").read_text() == before


def test_atomic_replace_and_no_temp_files(tmp_path: Path) -> None:
    directory = tmp_path / "textfile_collector"  # created when missing
    path = write_textfile(directory, "sync", SYNC, STATUS)
    old_text = path.read_text()
    with path.open() as reader:  # a collector in the middle of reading the old file
        old_inode = os.fstat(reader.fileno()).st_ino
        write_textfile(directory, "stats", STATS, None)
        assert reader.read() == old_text  # the old file is never written in place
    assert path.stat().st_ino != old_inode
    assert os.listdir(directory) == ["mirror_sync.prom"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_textfile(tmp_path, "sync", SYNC, STATUS)
    before = path.read_text()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics.os, "replace", broken_replace)
    with pytest.raises(FilesystemError, match="is full"):  # one sentence, exit 5 (record_run only logs it)
        write_textfile(tmp_path, "stats", STATS, None)
    monkeypatch.undo()
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["mirror_sync.prom"]


def test_foreign_or_damaged_content_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "mirror_sync.prom").write_text(
        "# HELP something_else Not ours.\n# TYPE something_else gauge\nsomething_else 1\n"
        'mirror_sync_last_run_success{command="verify"} 1\n'
        "mirror_sync_projects not-a-number\n"
        'mirror_sync_files{broken 3\n'
        "\x00\x01 garbage\n"
    )
    write_textfile(tmp_path, "stats", STATS, None)
    samples = read(tmp_path)
    assert ("something_else", ()) not in samples
    assert val(samples, "mirror_sync_last_run_success", "verify") == 1  # ours, kept
    assert ("mirror_sync_projects", ()) not in samples


def test_concurrent_writers_keep_both(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def writer(command: str, summary: dict[str, Any]) -> None:
        try:
            for _ in range(25):
                write_textfile(tmp_path, command, summary, None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=a) for a in (("sync", SYNC), ("stats", STATS), ("verify", VERIFY))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    samples = read(tmp_path)
    assert {k[1][0][1] for k in samples if k[0] == "mirror_sync_last_run_timestamp_seconds"} == {"sync", "stats", "verify"}
    assert os.listdir(tmp_path) == ["mirror_sync.prom"]


def test_stats_run_to_metrics(tmp_path: Path) -> None:
    """The summary run_stats returns is what write_textfile reads."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "access.log").write_text(
        '10.0.0.1 - - [24/Nov/2026:13:05:01 +0000] "GET /packages/aa/bb/cccc/foo-1.0-py3-none-any.whl HTTP/1.1" 200 5 "-" "pip/24.0"\n'
        "garbage\n"
    )
    config = config_from_mapping(
        {
            "directory": str(tmp_path / "mirror"),
            "upstream": "http://127.0.0.1:9/simple/",
            "statistics": {"access_log_pattern": str(logs / "access.log*")},
            "metrics": {"textfile_directory": str(tmp_path / "prom")},
        },
        tmp_path / "mirror.yml",
    )
    summary = run_stats(config).to_json()
    assert config.metrics.textfile_directory is not None
    metrics.record_run(config, "stats", summary)
    samples = read(tmp_path / "prom")
    assert val(samples, "mirror_sync_last_run_log_lines", "stats") == 2
    assert val(samples, "mirror_sync_last_run_log_lines_malformed", "stats") == 1
    assert val(samples, "mirror_sync_stats_downloads_total") == 1
    assert val(samples, "mirror_sync_last_run_success", "stats") == 1


def test_every_family_renders_well_formed() -> None:
    samples: dict[metrics_key, metrics.Number] = {
        (f.name, (("command", 'we"ird\\\n'),) if f.owner == "command" else ()): 1.25
        for f in metrics.FAMILIES
    }
    parsed, types = parse(metrics.render(samples))
    assert len(parsed) == len(metrics.FAMILIES)
    assert metrics.format_value(float("nan")) == "NaN" and metrics.format_value(2.0) == "2"


def test_render_round_trip(tmp_path: Path) -> None:
    samples: dict[metrics_key, metrics.Number] = {
        (f.name, (("command", 'a"b\\c'),) if f.owner == "command" else ()): 7 for f in metrics.FAMILIES
    }
    (tmp_path / "mirror_sync.prom").write_text(metrics.render(samples))
    assert metrics.read_textfile(tmp_path / "mirror_sync.prom") == samples


def test_record_run_from_config(tmp_path: Path) -> None:
    base = {"directory": str(tmp_path / "mirror"), "upstream": "http://127.0.0.1:9/simple/"}
    unset = config_from_mapping(base, tmp_path / "mirror.yml")
    assert metrics.record_run(unset, "sync", SYNC, STATUS) is None
    assert not (tmp_path / "prom").exists()
    config = config_from_mapping({**base, "metrics": {"textfile_directory": "prom"}}, tmp_path / "mirror.yml")
    assert metrics.record_run(config, "sync", SYNC, STATUS) == tmp_path / "prom" / "mirror_sync.prom"
    assert val(read(tmp_path / "prom"), "mirror_sync_lag_serials") == 2
    # an unwritable target is logged, never raised: a regular file where the directory should be
    blocked = config_from_mapping({**base, "metrics": {"textfile_directory": "blocker/prom"}}, tmp_path / "mirror.yml")
    (tmp_path / "blocker").write_text("not a directory")
    assert metrics.record_run(blocked, "sync", SYNC, STATUS) is None


def test_status_refreshes_only_the_mirror_state(tmp_path: Path) -> None:
    write_textfile(tmp_path, "sync", SYNC, STATUS)
    write_textfile(tmp_path, "status", {**STATUS, "lag_serials": 9, "lag_seconds": 600}, None)
    samples = read(tmp_path)
    assert val(samples, "mirror_sync_lag_serials") == 9 and val(samples, "mirror_sync_lag_seconds") == 600
    assert {dict(k[1]).get("command") for k in samples} == {None, "sync"}  # no command="status" series
