"""The publisher's ordering guarantees, observed on the file system calls it makes."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from mirror_sync.models import MirroredFile
from mirror_sync.publish import Publisher
from mirror_sync.state import State


def _file(project: str, name: str) -> MirroredFile:
    return MirroredFile(project, name, f"packages/aa/bb/{project}/{name}", "http://u.invalid/" + name, 1, "0" * 64,
                        None, False, None, None, None, "1.0")


def test_a_deleted_projects_page_goes_before_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = tmp_path / "web"
    state = State(tmp_path / "state.sqlite")
    files = [_file("zzz", "zzz-1.0.tar.gz"), _file("zzz", "zzz-1.0-py3-none-any.whl")]
    for f in files:
        (web / f.path).parent.mkdir(parents=True, exist_ok=True)
        (web / f.path).write_bytes(b"x")
    (web / "simple/zzz").mkdir(parents=True)
    (web / "simple/zzz/index.html").write_text("<a>")
    state.begin()
    state.save_project("zzz", "zzz", 1, 1, None, "s", None, [], "", "", 0.0)
    state.replace_files("zzz", files)
    state.commit()

    events: list[str] = []
    real_unlink, real_rmtree = Path.unlink, shutil.rmtree
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (events.append(f"file {self.name}"), real_unlink(self, *a, **k))[1])
    monkeypatch.setattr(shutil, "rmtree", lambda p, *a, **k: (events.append(f"page {os.path.basename(p)}"), real_rmtree(p, *a, **k))[1])
    publisher = Publisher(state, web, None, fsync=False)
    publisher.delete_projects(["zzz"])
    publisher.collect_garbage()
    assert events[0] == "page zzz", events
    assert {e for e in events[1:] if e.startswith("file ")} >= {"file zzz-1.0.tar.gz", "file zzz-1.0-py3-none-any.whl"}
    assert not (web / "simple/zzz").exists() and not any((web / "packages").rglob("*.whl"))
    state.close()


def test_repair_rewrites_a_projects_pages_through_the_publisher_and_the_state_follows(tmp_path: Path) -> None:
    web = tmp_path / "web"
    state = State(tmp_path / "state.sqlite")
    files = [_file("abc", "abc-1.0.tar.gz")]
    state.begin()
    state.save_project("abc", "ABC", 7, 7, None, "s", None, ["1.0"], "stale", "stale", 0.0)
    state.replace_files("abc", files)
    state.commit()
    (web / "simple/abc").mkdir(parents=True)
    (web / "simple/abc/index.html").write_text("damaged")
    row = state.project("abc")
    assert row is not None

    Publisher(state, web, None, fsync=False).republish(row)

    page = web / "simple/abc"
    html, js = (page / "index.html").read_bytes(), (page / "index.v1_json").read_bytes()
    assert b"abc-1.0.tar.gz" in html and b"ABC" in html
    assert [f["filename"] for f in json.loads(js)["files"]] == ["abc-1.0.tar.gz"]
    assert os.stat(page / "index.html").st_ino == os.stat(page / "index.v1_html").st_ino  # one file, two names
    after = state.project("abc")
    assert after is not None
    assert (after.html_sha256, after.json_sha256) == (hashlib.sha256(html).hexdigest(), hashlib.sha256(js).hexdigest())
    assert not [p.name for p in page.iterdir() if p.name.startswith(".")]  # no temporary file left
    state.close()


def test_record_mtimes_moves_only_the_named_files(tmp_path: Path) -> None:
    state = State(tmp_path / "state.sqlite")
    files = [_file("abc", "abc-1.0.tar.gz"), _file("abc", "abc-1.0-py3-none-any.whl")]
    state.begin()
    state.replace_files("abc", files)
    state.commit()
    state.record_mtimes([])  # nothing to record: no transaction
    state.record_mtimes([(files[0].path, 123)])
    assert {f.filename: f.mtime_ns for f in state.files_of("abc")} == {"abc-1.0.tar.gz": 123, "abc-1.0-py3-none-any.whl": 0}
    assert not state.db.in_transaction
    state.close()


def test_garbage_of_many_files_is_unlinked_on_threads_and_counted(tmp_path: Path) -> None:
    """Past UNLINK_THREADS * 2 files the unlinks run on a pool: every file and sidecar goes, the
    emptied directories go, a file still referenced stays, and only real files are counted."""
    from mirror_sync import publish

    web = tmp_path / "web"
    state = State(tmp_path / "state.sqlite")
    count = publish.UNLINK_THREADS * 4
    old = [_file("big", f"big-{i}.0-py3-none-any.whl") for i in range(count)]
    old = [dataclasses.replace(f, path=f"packages/{i:02x}/{i:02x}/h{i}/{f.filename}") for i, f in enumerate(old)]
    for f in old:
        (web / f.path).parent.mkdir(parents=True, exist_ok=True)
        (web / f.path).write_bytes(b"x")
        (web / (f.path + ".metadata")).write_bytes(b"m")
    state.begin()
    state.save_project("big", "big", 1, 1, None, "s", None, [], "", "", 0.0)
    state.replace_files("big", old)
    state.commit()
    kept = old[0]
    state.begin()
    removed = state.replace_files("big", [kept])
    state.add_garbage(removed)
    state.add_garbage(p + ".metadata" for p in removed)
    state.add_garbage([kept.path])  # listed as garbage but still referenced: stays
    state.commit()
    publisher = Publisher(state, web, None, fsync=False)
    assert publisher.collect_garbage() == 2 * (count - 1) + 1
    assert publisher.files_deleted == count - 1
    assert (web / kept.path).is_file()
    left = sorted(str(p.relative_to(web)) for p in (web / "packages").rglob("*") if p.is_file())
    assert left == [kept.path, kept.path + ".metadata"]
    assert sorted(p.name for p in (web / "packages").iterdir()) == ["00"]  # emptied directories pruned
    assert state.garbage() == []
    state.close()
