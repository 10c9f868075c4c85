"""sqlite's errors are the engine's: a damaged, immutable or misplaced state.sqlite, and a disk full
to its last block, give one sentence and the right exit code for `sync`, `verify --repair` and
`status`, and touch nothing under web/. `rebuild-state` rebuilds the state from web/ by re-hashing,
after which a sync downloads nothing it already holds."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.support.index_tree import IndexTree
from tests.support.mirror_check import check_mirror
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import run_cli, write_config


def web_snapshot(mirror: Path) -> dict[str, str]:
    """Every file of the mirror (pages and files under web/simple and web/packages) with the
    sha256 of its bytes; the front page and the statistics beside them are rewritten by every run."""
    web = mirror / "web"
    return {str(p.relative_to(web)): hashlib.sha256(p.read_bytes()).hexdigest()
            for top in ("simple", "packages") for p in (web / top).rglob("*") if p.is_file()}


def build(tree: IndexTree, projects: int = 30) -> None:
    for i in range(projects):
        tree.add_wheel(f"proj-{i:02d}", "1.0", requires_dist=["other>=1"] if i % 3 == 0 else ())
        tree.add_sdist(f"proj-{i:02d}", "1.0")
        if i % 4 == 0:
            tree.add_wheel(f"proj-{i:02d}", "1.1", requires_python=">=3.8")
    tree.yank("proj-01", "proj_01-1.0-py3-none-any.whl", "broken")
    tree.write()


def assert_one_sentence(stderr: str, summary: dict) -> str:
    """The run's error: one line of the log (with --json, the summary carries it too)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr
    sentence = summary["error"]
    assert errors[0].endswith(" ERROR " + sentence) and "\n" not in sentence
    return sentence


# -- the damage, one function each -------------------------------------------------------------


def truncate(state: Path) -> None:
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 3])


def garble_header(state: Path) -> None:
    data = state.read_bytes()
    state.write_bytes(b"\x00not a database\x00" * 4 + data[64:])


def garble_pages(state: Path) -> None:
    """Random bytes over every page but the first (the header and schema stay readable)."""
    data = state.read_bytes()
    page = 4096
    assert len(data) >= 3 * page, "the test state is too small to garble its inner pages"
    state.write_bytes(data[:page] + os.urandom(len(data) - page))


def make_directory(state: Path) -> None:
    state.unlink()
    state.mkdir()
    (state / "something").write_text("x")


def make_immutable(state: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    if subprocess.run(["chattr", "+i", str(state)], capture_output=True).returncode != 0:
        pytest.skip("the file system of the test directory has no immutable attribute")


def undo(state: Path) -> None:
    subprocess.run(["chattr", "-i", str(state)], capture_output=True)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": truncate,
    "garbled-header": garble_header,
    "garbled-pages": garble_pages,
    "directory": make_directory,
    "immutable": make_immutable,
}

# (damage, command) -> (exit code, words the sentence has); None: the command works
EXPECT: dict[tuple[str, str], Optional[tuple[int, tuple[str, ...]]]] = {}
for damage in ("truncated", "garbled-header", "garbled-pages"):
    for command in ("sync", "verify", "status"):
        EXPECT[(damage, command)] = (1, ("is damaged", "rebuild-state", "downloads nothing"))
for command in ("sync", "verify", "status"):
    EXPECT[("directory", command)] = (1, ("is a directory", "rebuild-state"))
EXPECT[("immutable", "sync")] = (5, ("immutable", "chattr -i"))
EXPECT[("immutable", "verify")] = (5, ("immutable", "chattr -i"))
EXPECT[("immutable", "status")] = None  # reading it works
ARGS = {"sync": ("sync",), "verify": ("verify", "--repair"), "status": ("status",)}


@pytest.fixture
def synced(index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path) -> tuple[Path, Path, IndexTree]:
    build(index_tree)
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    return cfg, mirror, index_tree


@pytest.mark.parametrize("damage, command", sorted(EXPECT))
def test_a_damaged_state_is_one_sentence_and_touches_no_file(synced, damage: str, command: str) -> None:
    cfg, mirror, tree = synced
    tree.add_wheel("proj-02", "2.0")  # the sync has something to do
    tree.write()
    before = web_snapshot(mirror)
    state = mirror / "state.sqlite"
    DAMAGE[damage](state)
    try:
        rc, summary, stderr = run_cli(cfg, *ARGS[command])
        expected = EXPECT[(damage, command)]
        if expected is None:
            assert rc == 0 and "Traceback" not in stderr, (summary, stderr)
            assert summary["projects"] == 30
        else:
            code, words = expected
            assert rc == code, (summary, stderr)
            sentence = assert_one_sentence(stderr, summary)
            for word in words:
                assert word in sentence, sentence
            assert str(state) in sentence
        assert web_snapshot(mirror) == before
    finally:
        undo(state)


def test_the_sentences_name_the_cause() -> None:
    from mirror_sync.state import StateFacts, describe_state_error, sqlite_problem

    path = Path("/srv/m/state.sqlite")
    cmd = "mirror-sync -c m.yml rebuild-state"
    kinds = {
        ("SQLITE_CORRUPT", "database disk image is malformed"): "corrupt",
        ("SQLITE_NOTADB", "file is not a database"): "corrupt",
        (None, "file is not a database"): "corrupt",
        ("SQLITE_FULL", "database or disk is full"): "full",
        ("SQLITE_IOERR_SHMSIZE", "disk I/O error"): "ioerr",
        (None, "disk I/O error"): "ioerr",
        ("SQLITE_READONLY", "attempt to write a readonly database"): "readonly",
        ("SQLITE_CANTOPEN", "unable to open database file"): "cantopen",
        ("SQLITE_BUSY", "database is locked"): "busy",
        ("SQLITE_ERROR", "no such table: meta"): "other",
    }
    for (name, message), kind in kinds.items():
        assert sqlite_problem(name, message) == kind, (name, message)

    def said(kind: str, facts: "StateFacts", message: str = "x") -> tuple[int, str]:
        err = describe_state_error(kind, message, path, facts, cmd)
        return err.exit_code, str(err)

    code, text = said("ioerr", StateFacts(disk_full=True), "disk I/O error")
    assert code == 5 and "is full" in text and "disk I/O error" in text and "nothing was deleted" in text
    assert said("full", StateFacts())[0] == 5
    code, text = said("readonly", StateFacts(read_only_fs=True))
    assert code == 5 and "read-only file system" in text and "remount" in text
    code, text = said("readonly", StateFacts(unwritable="is immutable (chattr +i); ...", unwritable_path=str(path)))
    assert code == 5 and "immutable" in text
    code, text = said("ioerr", StateFacts())
    assert code == 5 and "kernel log" in text
    code, text = said("corrupt", StateFacts(), "database disk image is malformed")
    assert code == 1 and cmd in text and "malformed" in text
    code, text = said("cantopen", StateFacts(is_dir=True))
    assert code == 1 and "is a directory" in text and cmd in text
    assert said("busy", StateFacts())[0] == 3
    code, text = said("other", StateFacts(), "no such table: meta")
    assert code == 1 and "no such table" in text and cmd in text


# -- a disk full to its last block ---------------------------------------------------------------


def fill(mount: Path) -> None:
    """Fill the file system to its last block (and its last inode, on tmpfs's terms)."""
    def write_until_full(path: Path, chunk: int) -> bool:
        """True when the first write already failed."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for written in range(1 << 20):  # bounded: 64 GiB at most
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:
                    return written == 0
            return False
        finally:
            os.close(fd)

    write_until_full(mount / "filler", 65536)
    for i in range(100_000):  # the blocks a large write could not take
        if write_until_full(mount / f"filler-{i}", 512):
            break
    st = os.statvfs(mount)
    assert st.f_bavail * st.f_frsize < 64 * 1024, st


def unfill(mount: Path) -> None:
    for p in mount.glob("filler*"):
        p.unlink()


@pytest.fixture(params=["tmpfs", "ext4"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    mnt = tmp_path / "small"
    mnt.mkdir()
    loop: Optional[str] = None
    if request.param == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    else:
        image = tmp_path / "small.img"
        with open(image, "wb") as fh:
            fh.truncate(16 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
        attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
        if attached.returncode != 0:
            pytest.skip(f"no loop device: {attached.stderr.strip()}")
        loop = attached.stdout.strip()
        subprocess.run(["mount", loop, str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        if loop is not None:
            subprocess.run(["losetup", "-d", loop], check=True)


@pytest.mark.root
def test_a_full_disk_is_exit_5_and_one_sentence(index_tree: IndexTree, upstream: UpstreamServer, small_disk: Path, tmp_path: Path) -> None:
    build(index_tree)
    mirror = small_disk / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.add_wheel("proj-02", "2.0")
    index_tree.write()
    before = web_snapshot(mirror)
    # no connection is open: the empty -wal and the -shm that a reader leaves go, so that sqlite
    # itself meets the full disk when it needs them again (as after a reboot)
    for side in ("-wal", "-shm"):
        sidecar = Path(f"{mirror / 'state.sqlite'}{side}")
        if sidecar.exists():
            assert side == "-shm" or sidecar.stat().st_size == 0
            sidecar.unlink()
    fill(small_disk)
    for args in (("sync",), ("verify", "--repair"), ("status",)):
        rc, summary, stderr = run_cli(cfg, *args)
        assert rc == 5, (args, summary, stderr)
        sentence = assert_one_sentence(stderr, summary)
        assert "is full" in sentence, sentence
        assert web_snapshot(mirror) == before
    check_mirror(mirror)
    unfill(small_disk)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and summary["files"]["downloaded"] == 1, summary
    assert "proj_02-2.0-py3-none-any.whl" in check_mirror(mirror)["proj-02"]


# -- rebuilding the state from web/ --------------------------------------------------------------


def state_rows(path: Path) -> tuple[dict, dict]:
    """The state's projects and files, without what the pages cannot tell (upstream's URLs,
    validators, fingerprints, selection, sync times) and without what a full mirror does not
    keep (requirements)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        projects = {r["name"]: (r["display"], r["serial"], r["status"], r["versions"], r["html_sha256"], r["json_sha256"])
                    for r in db.execute("SELECT * FROM projects")}
        files = {r["path"]: (r["project"], r["filename"], r["size"], r["sha256"], r["requires_python"], r["yanked"],
                             r["upload_time"], r["metadata_sha256"], r["metadata_size"], r["version"], r["mtime_ns"])
                 for r in db.execute("SELECT * FROM files")}
        return projects, files
    finally:
        db.close()


def downloads(upstream: UpstreamServer, since: int) -> list[str]:
    return [r.path for r in upstream.requests()[since:] if r.path.startswith("/packages/")]


@pytest.mark.parametrize("damage", ["garbled-header", "deleted", "directory"])
def test_rebuild_state_from_web_then_sync_downloads_nothing(synced, upstream: UpstreamServer, damage: str) -> None:
    cfg, mirror, tree = synced
    state = mirror / "state.sqlite"
    projects, files = state_rows(state)
    pages = web_snapshot(mirror)
    if damage == "deleted":
        state.unlink()
    else:
        DAMAGE[damage](state)
        rc, summary, stderr = run_cli(cfg, "sync")
        assert rc == 1 and "rebuild-state" in assert_one_sentence(stderr, summary)
    rc, summary, stderr = run_cli(cfg, "rebuild-state")
    assert rc == 0, (summary, stderr)
    assert summary["projects"] == 30 and summary["files"] == len(files)
    assert summary["rewritten_pages"] == 0 and summary["skipped"] == [] and summary["dropped"] == []
    if damage != "deleted":
        kept = Path(summary["previous_state"])
        assert kept.name.startswith("state.sqlite.before-rebuild-") and kept.exists()
    assert web_snapshot(mirror) == pages  # the pages were right: rewritten byte for byte or not at all
    assert state_rows(state) == (projects, files)
    rc, report, _ = run_cli(cfg, "verify", "--full")
    assert rc == 0 and report["ok"], report
    since = len(upstream.requests())
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and summary["ok"]
    assert summary["files"]["downloaded"] == 0 and downloads(upstream, since) == []
    assert len(check_mirror(mirror)) == 30
    assert web_snapshot(mirror) == pages
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and not summary["changed"]


def test_rebuild_leaves_out_what_is_broken_and_the_next_sync_brings_it_back(synced, upstream: UpstreamServer) -> None:
    cfg, mirror, tree = synced
    web = mirror / "web"
    by_name = {p.name: p for p in (web / "packages").rglob("*") if p.is_file()}
    by_name["proj_03-1.0-py3-none-any.whl"].unlink()
    corrupt = by_name["proj_04-1.0.tar.gz"]
    corrupt.write_bytes(b"x" * corrupt.stat().st_size)
    (web / "simple" / "proj-05" / "index.v1_json").write_bytes(b"{not json")
    (mirror / "state.sqlite").write_bytes(b"garbage")
    rc, summary, stderr = run_cli(cfg, "rebuild-state")
    assert rc == 0, (summary, stderr)
    assert [s["project"] for s in summary["skipped"]] == ["proj-05"]
    assert sorted((d["project"], d["file"], d["error"]) for d in summary["dropped"]) == [
        ("proj-03", "proj_03-1.0-py3-none-any.whl", "missing"),
        ("proj-04", "proj_04-1.0.tar.gz", "does not hash as its page says"),
    ]
    assert summary["rewritten_pages"] == 2 and summary["projects"] == 29
    # consistent at once: no page links to what was left out, the root lists no project left out
    for name, gone in (("proj-03", "proj_03-1.0-py3-none-any.whl"), ("proj-04", "proj_04-1.0.tar.gz")):
        listed = [f["filename"] for f in json.loads((web / "simple" / name / "index.v1_json").read_bytes())["files"]]
        assert listed and gone not in listed
    root = {p["name"] for p in json.loads((web / "simple" / "index.v1_json").read_bytes())["projects"]}
    assert len(root) == 29 and "proj-05" not in root
    rc, report, _ = run_cli(cfg, "verify", "--full")
    # what verify --repair would remove: the bad bytes, and the project left out (its pages and files)
    proj_05 = sorted(str(p.relative_to(web)) for p in (web / "packages").rglob("proj_05-*") if p.is_file())
    assert len(proj_05) == 3  # wheel, its .metadata, sdist
    lone_metadata = str(by_name["proj_03-1.0-py3-none-any.whl.metadata"].relative_to(web))  # its wheel is gone
    assert rc == 1 and sorted(report["orphans"]) == sorted([str(corrupt.relative_to(web)), lone_metadata, *proj_05, "simple/proj-05/"])
    assert report["missing"] == report["corrupt"] == []
    since = len(upstream.requests())
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert sorted(p.rsplit("/", 1)[1] for p in downloads(upstream, since) if not p.endswith(".metadata")) == [
        "proj_03-1.0-py3-none-any.whl", "proj_04-1.0.tar.gz"]
    pages = check_mirror(mirror)
    assert len(pages) == 30 and "proj_03-1.0-py3-none-any.whl" in pages["proj-03"] and "proj_04-1.0.tar.gz" in pages["proj-04"]


def test_rebuild_state_refuses_when_there_is_no_mirror(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "m.yml", "http://127.0.0.1:9/simple/", tmp_path / "mirror")
    (tmp_path / "mirror").mkdir()
    rc, summary, stderr = run_cli(cfg, "rebuild-state")
    assert rc == 1 and "no mirror to rebuild" in assert_one_sentence(stderr, summary)


def test_rebuild_state_is_in_the_help() -> None:
    import subprocess as sp
    import sys

    from tests.syncutil import REPO

    out = sp.run([sys.executable, "-m", "mirror_sync", "-c", "x", "--help"], capture_output=True, text=True,
                 cwd=REPO, timeout=60).stdout
    assert "rebuild-state" in out


@pytest.mark.root
def test_rebuild_state_refuses_an_immutable_state_before_it_starts(synced) -> None:
    cfg, mirror, _tree = synced
    state = mirror / "state.sqlite"
    make_immutable(state)
    try:
        rc, summary, stderr = run_cli(cfg, "rebuild-state")
        assert rc == 5
        sentence = assert_one_sentence(stderr, summary)
        assert "immutable" in sentence and f"chattr -i {state}" in sentence and "moved aside" in sentence
        assert not (mirror / "state.sqlite.rebuild").exists()
    finally:
        undo(state)
    assert run_cli(cfg, "rebuild-state")[0] == 0
