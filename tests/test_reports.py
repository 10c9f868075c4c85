"""The typed reports (mirror_sync/reports.py): each command's JSON has exactly the keys the CLI,
the metrics writer and the Ansible module read, whatever the report holds."""
from __future__ import annotations

import json

from mirror_sync.observe.status import status_of
from mirror_sync.reports import (
    Failure,
    RebuildReport,
    StatsReport,
    StatsTotals,
    StatusReport,
    VerifyReport,
)

VERIFY_KEYS = {"command", "ok", "full", "repair", "duration_s", "checked_pages", "checked_files", "missing", "corrupt",
               "orphans", "repaired", "removed", "failures"}
STATUS_KEYS = {"command", "directory", "upstream", "initialized", "last_sync_started", "last_sync_finished", "last_success",
               "last_result", "last_duration_s", "last_verify", "last_verify_result", "upstream_serial", "mirror_serial",
               "lag_serials", "lag_seconds", "projects", "files", "bytes"}
STATUS_RUN_KEYS = {"last_failures", "last_downloaded", "last_downloaded_bytes", "last_deleted_files"}
REBUILD_KEYS = {"command", "ok", "directory", "projects", "files", "bytes", "mirror_serial", "rewritten_pages", "skipped",
                "dropped", "previous_state", "duration_s"}
STATS_KEYS = {"command", "ok", "directory", "output_directory", "started", "finished", "duration_s", "files_seen",
              "files_read", "lines_read", "downloads", "metadata", "pages", "malformed", "projects_written", "incomplete",
              "totals", "failures"}


def test_verify_report_keys_and_verdict() -> None:
    clean = VerifyReport(full=True, repair=False, duration_s=0.5, checked_pages=3, checked_files=2)
    assert set(clean.to_json()) == VERIFY_KEYS and clean.to_json()["ok"] is True
    damaged = VerifyReport(full=False, repair=False, duration_s=0.5, checked_pages=3, checked_files=2,
                           corrupt=["packages/aa/bb/x/x-1.0.tar.gz"])
    assert damaged.to_json()["ok"] is False
    repaired = VerifyReport(full=False, repair=True, duration_s=0.5, checked_pages=3, checked_files=2,
                            corrupt=["packages/aa/bb/x/x-1.0.tar.gz"], repaired=1)
    assert repaired.ok
    failed = VerifyReport(full=False, repair=True, duration_s=0.5, checked_pages=3, checked_files=2, missing=["packages/m"],
                          failures=[Failure("upstream answered 404", project="x", file="x-1.0.tar.gz")])
    doc = failed.to_json()
    assert doc["ok"] is False
    assert doc["failures"] == [{"project": "x", "file": "x-1.0.tar.gz", "error": "upstream answered 404"}]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, nothing typed left in it


def test_status_report_keys_before_and_after_the_first_sync() -> None:
    empty = StatusReport("/srv/mirror", "http://u.invalid/simple/", initialized=False).to_json()
    assert set(empty) == STATUS_KEYS
    assert (empty["projects"], empty["files"], empty["bytes"], empty["lag_serials"]) == (0, 0, 0, None)
    meta = {"last_success": "1970-01-01T00:00:10Z", "upstream_serial": "9", "mirror_serial": "11", "last_failures": "2"}
    synced = status_of("/srv/mirror", "http://u.invalid/simple/", meta, (1, 2, 3), now=20.0).to_json()
    assert set(synced) == STATUS_KEYS | STATUS_RUN_KEYS
    assert synced["lag_serials"] == 0 and synced["lag_seconds"] == 10.0  # a mirror ahead of upstream is not behind
    assert synced["last_failures"] == 2 and synced["last_downloaded"] is None


def test_rebuild_report_keys() -> None:
    report = RebuildReport("/srv/mirror", 2, 3, 400, 17, 1, skipped=[Failure("its JSON page is not JSON", project="bad")],
                           dropped=[Failure("missing", project="abc", file="abc-1.0.tar.gz")], previous_state=None)
    doc = report.to_json()
    assert set(doc) == REBUILD_KEYS and doc["ok"] is True
    assert doc["skipped"] == [{"project": "bad", "error": "its JSON page is not JSON"}]
    assert doc["dropped"] == [{"project": "abc", "file": "abc-1.0.tar.gz", "error": "missing"}]


def test_stats_report_keys() -> None:
    report = StatsReport("/srv/mirror", "/srv/mirror/web/stats", "1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z", 1.0,
                         2, 1, 10, 4, 1, 3, 2, 1, StatsTotals(40, 10, 30, 100, 5),
                         failures=[Failure("cannot read /var/log/a.gz: bad", file="/var/log/a.gz")])
    doc = report.to_json()
    assert set(doc) == STATS_KEYS and doc["ok"] is False
    assert doc["totals"] == {"downloads": 40, "metadata": 10, "pages": 30, "lines": 100, "malformed": 5}
    assert doc["failures"] == [{"file": "/var/log/a.gz", "error": "cannot read /var/log/a.gz: bad"}]
