"""The publisher's ordering guarantees, observed on the file system calls it makes."""
from __future__ import annotations

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
