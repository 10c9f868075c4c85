"""Hostile upstream data, failing upstreams, full disks, killed runs, overlapping runs.

Each: a clear error, nothing written outside `directory`, no bad file published, the other
projects unaffected, `verify` clean afterwards.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.index_tree import IndexTree
from tests.support.mirror_check import assert_no_temp_files, check_mirror
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import (
    cli_env,
    mirrored_files,
    outside_files,
    run_cli,
    write_config,
)


def good_projects(tree: IndexTree, n: int = 3) -> None:
    for i in range(n):
        tree.add_wheel(f"good{i}", "1.0")


def assert_clean(cfg: Path, mirror: Path, tmp_path: Path) -> dict[str, list[str]]:
    pages = check_mirror(mirror)
    assert_no_temp_files(mirror)
    rc, verify, _ = run_cli(cfg, "verify", "--full")
    assert rc == 0 and verify["ok"], verify
    return pages


@pytest.mark.parametrize(
    "field, value",
    [
        ("filename", "../../../../escaped-1.0-py3-none-any.whl"),
        ("filename", "sub/dir-1.0-py3-none-any.whl"),
        ("filename", ".hidden-1.0-py3-none-any.whl"),
        ("url", "../../../../../../etc/passwd"),
        ("url", "javascript:alert(1)"),
    ],
)
def test_path_traversal_and_unsafe_names(index_tree: IndexTree, upstream, tmp_path: Path, field: str, value: str) -> None:
    good_projects(index_tree)
    index_tree.add_wheel("evil", "1.0")
    index_tree.write()
    index_tree.patch_file("evil", "evil-1.0-py3-none-any.whl", **{field: value})
    index_tree.write()
    mirror = tmp_path / "area" / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1
    assert [f["project"] for f in summary["failures"]] == ["evil"]
    assert "unsafe" in summary["failures"][0]["error"] or "URL" in summary["failures"][0]["error"] or "refusing" in summary["failures"][0]["error"]
    assert outside_files(tmp_path / "area", mirror) == []
    pages = assert_clean(cfg, mirror, tmp_path)
    assert set(pages) == {"good0", "good1", "good2"}


@pytest.mark.parametrize("field", ["sha256", "size"])
def test_bytes_that_do_not_match_are_never_published(index_tree: IndexTree, upstream, tmp_path: Path, field: str) -> None:
    good_projects(index_tree)
    entry = index_tree.add_wheel("liar", "1.0")
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    wrong = "0" * 64 if field == "sha256" else entry.size + 7
    index_tree.patch_file("liar", "liar-1.0-py3-none-any.whl", **{field: wrong})
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"][0]["project"] == "liar"
    assert "sha256" in summary["failures"][0]["error"] or "bytes" in summary["failures"][0]["error"]
    assert "liar-1.0-py3-none-any.whl" not in mirrored_files(mirror)
    pages = assert_clean(cfg, mirror, tmp_path)
    assert "liar" not in pages and len(pages) == 3
    # upstream fixes it: the next run picks it up
    index_tree.patch_file("liar", "liar-1.0-py3-none-any.whl", **{field: entry.sha256 if field == "sha256" else entry.size})
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert "liar" in assert_clean(cfg, mirror, tmp_path)


def test_malformed_json_page_fails_one_project_and_keeps_its_last_good_page(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.add_wheel("broken", "1.0")
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.add_wheel("broken", "2.0")
    index_tree.add_wheel("good0", "2.0")
    index_tree.write()
    index_tree.set_raw_page("broken", "json", b'{"meta": {"api-version": "1.1"}, "files": [')
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"][0]["project"] == "broken" and "malformed JSON" in summary["failures"][0]["error"]
    pages = assert_clean(cfg, mirror, tmp_path)
    assert pages["broken"] == ["broken-1.0-py3-none-any.whl"]
    assert "good0-2.0-py3-none-any.whl" in pages["good0"]


def test_malformed_root_is_a_clear_error_and_changes_nothing(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.set_raw_root("json", b"<html>surprise</html>")
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1 and "malformed JSON" in summary["error"]
    assert len(assert_clean(cfg, mirror, tmp_path)) == 3


def test_upstream_5xx_storm_is_retried(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    upstream.add_fault("/simple/good1/", status=503, times=2)
    upstream.add_fault("/packages/", status=502, times=2)
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, retries=3)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert len(assert_clean(cfg, mirror, tmp_path)) == 3


def test_upstream_that_keeps_failing_fails_only_that_project(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    upstream.add_fault("/simple/good1/", status=500, times=1000)
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, retries=1)
    rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"] == [{"project": "good1", "error": f"project good1: upstream answered HTTP 500 ({upstream.url}good1/)"}]
    assert set(assert_clean(cfg, mirror, tmp_path)) == {"good0", "good2"}


def test_timeouts_fail_the_project_not_the_run(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.add_wheel("slow", "1.0")
    index_tree.write()
    slow_file = index_tree.file("slow", "slow-1.0-py3-none-any.whl").path
    upstream.add_fault("/" + slow_file, delay=3.0, times=1000)
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, timeout=0.5, retries=1)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"][0]["project"] == "slow"
    assert "timed out" in summary["failures"][0]["error"] or "Timeout" in summary["failures"][0]["error"]
    assert set(assert_clean(cfg, mirror, tmp_path)) == {"good0", "good1", "good2"}


def test_connection_cut_mid_body_is_retried(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    upstream.add_fault("/packages/", truncate=True, times=2)
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, retries=3)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert len(assert_clean(cfg, mirror, tmp_path)) == 3


def test_stale_cdn_page_is_rejected_and_retried(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.add_wheel("good0", "2.0")
    index_tree.write()
    upstream.add_fault("/simple/good0/", stale=True, times=2)
    rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert "stale-page" in stderr
    assert "good0-2.0-py3-none-any.whl" in assert_clean(cfg, mirror, tmp_path)["good0"]


def test_stale_page_forever_fails_the_project(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.add_wheel("good0", "2.0")
    index_tree.write()
    upstream.add_fault("/simple/good0/", stale=True, times=1000)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1 and "stale" in summary["failures"][0]["error"]
    assert assert_clean(cfg, mirror, tmp_path)["good0"] == ["good0-1.0-py3-none-any.whl"]
    upstream.clear_faults()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and "good0-2.0-py3-none-any.whl" in check_mirror(mirror)["good0"]


def test_second_run_refuses_while_the_lock_is_held(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree)
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    mirror.mkdir()
    with open(mirror / ".lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 3 and "holds" in summary["error"]
        assert not (mirror / "web").exists()
    assert run_cli(cfg, "sync")[0] == 0


def test_run_killed_midway_leaves_a_servable_mirror_and_resumes(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    for i in range(40):
        index_tree.add_wheel(f"p{i:02d}", "1.0")
        index_tree.add_wheel(f"p{i:02d}", "1.1")
    index_tree.write()
    upstream.add_fault("/packages/", delay=0.05, times=100000)
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, workers=2)
    env = cli_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror_sync", "-c", str(cfg), "sync"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # wait (bounded) until some projects are published, then kill without warning
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        published = [p for p in (mirror / "web" / "simple").glob("*/index.v1_json")] if (mirror / "web" / "simple").exists() else []
        if len(published) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # every page published so far links only to files that are there with the right hash
    partial = check_mirror(mirror)
    assert 5 <= len(partial) < 40
    upstream.clear_faults()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    pages = assert_clean(cfg, mirror, tmp_path)
    assert len(pages) == 40 and all(len(v) == 2 for v in pages.values())


def test_verify_finds_and_repairs_damage(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    good_projects(index_tree, 4)
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    web = mirror / "web"
    files = sorted(p for p in (web / "packages").rglob("*.whl"))
    files[0].unlink()
    files[1].write_bytes(b"garbage of the same length?")
    with open(files[2], "r+b") as fh:  # same size, other bytes: only --full sees it
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 1]))
    os.utime(files[2], ns=(files[2].stat().st_atime_ns, files[2].stat().st_mtime_ns))
    orphan = web / "packages" / "ff" / "ff" / "stray" / "stray-1.0-py3-none-any.whl"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"nobody links here")
    (web / "simple" / "good3" / "index.html").write_text("<html>defaced</html>")

    rc, report, _ = run_cli(cfg, "verify", "--full")
    assert rc == 1 and not report["ok"]
    rel = lambda p: str(p.relative_to(web))  # noqa: E731
    assert report["missing"] == [rel(files[0])]
    # index.v1_html is a hard link to index.html: defacing one defaces both
    assert sorted(report["corrupt"]) == sorted([rel(files[1]), rel(files[2]), "simple/good3/index.html", "simple/good3/index.v1_html"])
    assert report["orphans"] == [rel(orphan)]

    rc, report, _ = run_cli(cfg, "verify", "--repair", "--full")
    assert rc == 0 and report["ok"] and report["repaired"] == 4 and report["removed"] == 1
    assert not orphan.exists()
    assert len(assert_clean(cfg, mirror, tmp_path)) == 4


@pytest.mark.root
def test_disk_full_is_a_clear_error_and_the_mirror_stays_consistent(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    good_projects(index_tree)
    index_tree.write()
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], check=True)
    try:
        mirror = mnt / "mirror"
        cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
        assert run_cli(cfg, "sync")[0] == 0
        index_tree.add_file("bulky", "bulky-1.0-py3-none-any.whl", os.urandom(900 * 1024))
        index_tree.add_wheel("good0", "2.0")
        index_tree.write()
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 5, summary
        assert "full" in summary["error"]
        pages = check_mirror(mirror)
        assert "bulky" not in pages and len(pages) >= 3
        assert not list(mirror.rglob("*.part.*"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.root
def test_ext3_is_refused(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop device")
    if subprocess.run(["which", "mkfs.ext3"], capture_output=True).returncode != 0:
        pytest.skip("mkfs.ext3 (e2fsprogs) is not installed")
    good_projects(index_tree)
    index_tree.write()
    image = tmp_path / "ext3.img"
    with open(image, "wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext3", "-q", "-F", str(image)], check=True)
    mnt = tmp_path / "ext3"
    mnt.mkdir()
    attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attached.returncode != 0:
        pytest.skip(f"no loop device: {attached.stderr.strip()}")
    loop = attached.stdout.strip()
    try:
        subprocess.run(["mount", "-t", "ext3", loop, str(mnt)], check=True)
        try:
            cfg = write_config(tmp_path / "m.yml", upstream.url, mnt / "mirror")
            rc, summary, _ = run_cli(cfg, "sync")
            assert rc == 5 and "ext3" in summary["error"] and "64,998" in summary["error"]  # the ext4 driver serves ext3
            assert not (mnt / "mirror" / "web").exists()
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_verify_in_worker_processes_finds_the_same_damage(index_tree: IndexTree, upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large mirrors are hashed by worker processes: the verdicts are the same."""
    import mirror_sync.verify as verify_module
    from mirror_sync.config import load_config

    for i in range(30):
        index_tree.add_wheel(f"many{i:02d}", "1.0")
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror)
    assert run_cli(cfg, "sync")[0] == 0
    web = mirror / "web"
    files = sorted((web / "packages").rglob("*.whl"))
    files[3].unlink()
    files[17].write_bytes(b"x")
    metadata = files[25].with_name(files[25].name + ".metadata")
    metadata.write_bytes(b"Metadata-Version: 2.1\nName: tampered\n")
    (web / "simple" / "many07" / "index.v1_json").write_text("{}")
    stray = web / "packages" / "ee" / "ee" / "stray" / "stray-1.0.tar.gz"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"nobody links here")
    monkeypatch.setattr(verify_module, "PARALLEL_VERIFY_FILES", 5)
    monkeypatch.setattr(verify_module, "VERIFY_CHUNK", 4)
    report = verify_module.Verifier(load_config(cfg), full=True).run().to_json()
    rel = lambda p: str(p.relative_to(web))  # noqa: E731
    assert report["checked_files"] == 30 and not report["ok"]
    assert report["missing"] == [rel(files[3])]
    assert sorted(report["corrupt"]) == sorted([rel(files[17]), rel(metadata), "simple/many07/index.v1_json"])
    assert report["orphans"] == [rel(stray)] and report["checked_pages"] == 31
    report = verify_module.Verifier(load_config(cfg), full=True, repair=True).run().to_json()
    assert report["ok"] and report["repaired"] == 4 and report["removed"] == 1 and not stray.exists()
    assert len(check_mirror(mirror)) == 30


def test_what_we_publish_is_valid_one_entry_per_filename_and_iso_upload_times(tmp_path: Path) -> None:
    """A page that lists one filename twice with different hashes: that file is not mirrored and
    the conflict is a failure naming it; an upload-time that is not an ISO 8601 instant is
    dropped from what we publish (and logged), the file itself is kept."""
    tree = IndexTree(tmp_path / "upstream")
    tree.add_wheel("twice", "1.0")
    tree.add_wheel("twice", "2.0")
    tree.write()
    with UpstreamServer(tree.root) as server:
        import urllib.request

        req = urllib.request.Request(server.url + "twice/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        page = json.loads(urllib.request.urlopen(req, timeout=10).read())
        one, two = sorted(page["files"], key=lambda f: f["filename"])
        one["upload-time"] = "yesterday at noon"
        clash = dict(two, hashes={"sha256": "f" * 64})
        page["files"] = [one, two, clash]
        body = json.dumps(page).encode()
        server.add_fault("/simple/twice/", times=100, body=lambda: iter([body]))
        cfg = write_config(tmp_path / "m.yml", server.url, tmp_path / "mirror", projects=["twice"])
        rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"] == [{
        "project": "twice", "file": "twice-2.0-py3-none-any.whl",
        "error": "project twice: upstream lists 'twice-2.0-py3-none-any.whl' twice with different sha256; not mirrored",
    }]
    assert check_mirror(tmp_path / "mirror")["twice"] == ["twice-1.0-py3-none-any.whl"]
    published = json.loads((tmp_path / "mirror/web/simple/twice/index.v1_json").read_text())
    assert "upload-time" not in published["files"][0]
    assert "event=drop-upload-time" in stderr


def test_retries_do_not_multiply_and_a_broken_off_body_is_fetched_again(tmp_path: Path) -> None:
    """One retry policy: the HTTP layer retries a 503 `retries` times (with backoff) and the
    downloader does not retry that again; an answer that breaks off midway is fetched again."""
    tree = IndexTree(tmp_path / "upstream")
    tree.add_wheel("down", "1.0", with_metadata=False)  # the closure must fetch the wheel itself
    tree.add_wheel("cut", "1.0", with_metadata=False)
    tree.write()
    with UpstreamServer(tree.root) as server:
        server.add_fault("/packages/", status=503, times=1000)
        cfg = write_config(tmp_path / "m.yml", server.url, tmp_path / "mirror", projects=["down"], retries=2)
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 1 and summary["failures"][0]["project"] == "down"
        assert "HTTP 503" in summary["failures"][0]["error"]
        tried = server.requests("/packages/")
        assert len(tried) == 3 and tried[0].path.endswith(".whl"), [r.path for r in tried]  # 1 + 2 retries, not 3 * 3

        server.clear_faults()
        server.clear_log()
        server.add_fault("/packages/", truncate=True, times=1)
        cfg = write_config(tmp_path / "m2.yml", server.url, tmp_path / "mirror2", projects=["cut"], retries=2)
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0, summary
        assert check_mirror(tmp_path / "mirror2")["cut"] == ["cut-1.0-py3-none-any.whl"]
