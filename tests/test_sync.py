"""The sync engine against a real HTTP upstream on 127.0.0.1 serving generated wheels and sdists."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.index_tree import IndexTree
from tests.support.mirror_check import check_mirror
from tests.support.upstream_server import UpstreamServer
from tests.syncutil import cli_env, mirrored_files, run_cli, write_config


@pytest.fixture
def mirror_dir(tmp_path: Path) -> Path:
    return tmp_path / "mirror"


def populate(tree: IndexTree) -> None:
    tree.add_wheel("Alpha", "1.0", requires_dist=["beta>=1"])
    tree.add_wheel("Alpha", "2.0", requires_dist=["beta>=2", 'gamma; extra == "fast"', 'legacy; python_version < "3.0"'])
    tree.add_sdist("Alpha", "2.0", requires_dist=["beta>=2"])
    tree.add_wheel("beta", "1.0")
    tree.add_wheel("beta", "2.0", requires_python=">=3.8")
    tree.add_wheel("beta", "3.0rc1")
    tree.add_wheel("gamma", "0.1")
    tree.add_wheel("legacy", "1.0")
    tree.add_wheel("unrelated", "5.0")
    tree.yank("beta", "beta-1.0-py3-none-any.whl", "broken: use 2.0 <or later> & \"more\"")
    tree.write()


def test_full_sync_publishes_complete_pages(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert summary["ok"] and summary["changed"]
    assert summary["projects"]["total"] == 5
    assert summary["files"]["downloaded"] == 9
    assert summary["upstream_serial"] == index_tree.serial == summary["mirror_serial"]
    pages = check_mirror(mirror_dir)
    assert set(pages) == {"alpha", "beta", "gamma", "legacy", "unrelated"}

    simple = mirror_dir / "web" / "simple"
    root = json.loads((simple / "index.v1_json").read_text())
    assert root["meta"]["_last-serial"] == index_tree.serial
    serials = {p["name"]: p["_last-serial"] for p in root["projects"]}
    assert serials["Alpha"] == index_tree.project_serial("alpha")

    beta = json.loads((simple / "beta" / "index.v1_json").read_text())
    assert beta["meta"]["api-version"] == "1.1"
    assert beta["meta"]["_last-serial"] == index_tree.project_serial("beta")
    assert beta["versions"] == ["1.0", "2.0", "3.0rc1"]
    by_name = {f["filename"]: f for f in beta["files"]}
    yanked = by_name["beta-1.0-py3-none-any.whl"]
    assert yanked["yanked"] == "broken: use 2.0 <or later> & \"more\""
    assert by_name["beta-2.0-py3-none-any.whl"]["requires-python"] == ">=3.8"
    upstream_entry = index_tree.file("beta", "beta-2.0-py3-none-any.whl")
    assert by_name["beta-2.0-py3-none-any.whl"]["upload-time"].startswith(upstream_entry.upload_time.strftime("%Y-%m-%dT%H:%M:%S"))
    assert by_name["beta-2.0-py3-none-any.whl"]["size"] == upstream_entry.size
    assert all(f["url"].startswith("../../packages/") for f in beta["files"])
    assert by_name["beta-2.0-py3-none-any.whl"]["core-metadata"]["sha256"] == upstream_entry.metadata_sha256

    html = (simple / "beta" / "index.html").read_text()
    assert 'data-yanked="broken: use 2.0 &lt;or later&gt; &amp; &quot;more&quot;"' in html
    assert 'data-requires-python="&gt;=3.8"' in html
    assert '<meta name="pypi:repository-version" content="1.1">' in html

    # the sdist has no upstream metadata: none is advertised, and none is on disk
    alpha = json.loads((simple / "alpha" / "index.v1_json").read_text())
    sdist = [f for f in alpha["files"] if f["filename"].endswith(".tar.gz")][0]
    assert sdist["core-metadata"] is False

    rc, verify, _ = run_cli(cfg, "verify", "--full")
    assert rc == 0 and verify["ok"] and verify["checked_files"] == 9


def test_noop_sync_is_one_root_request(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    assert run_cli(cfg, "sync")[0] == 0
    before = len(upstream.requests())
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and not summary["changed"]
    assert summary["projects"]["synced"] == 0 and summary["files"]["downloaded"] == 0
    new = upstream.requests()[before:]
    assert [r.path for r in new] == ["/simple/"]


def test_noop_does_not_download_a_root_announcing_the_completed_serial(
    index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path
) -> None:
    """A root whose X-PyPI-Last-Serial is the serial the mirror completed is not read: the body
    (tens of megabytes on a big index) is never parsed, so even a garbled one changes nothing."""
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    assert run_cli(cfg, "sync")[0] == 0
    for page in ("index.v1_json", "index.html", "index.v1_html"):
        target = index_tree.root / "simple" / page
        if target.exists():
            target.write_bytes(b"{not json <html")
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and summary["ok"] and not summary["changed"], summary
    assert summary["projects"]["total"] == 5 and summary["files"]["total"] == 9
    # a new serial: the root is read again (and its garbage refused, with nothing lost)
    index_tree.add_wheel("gamma", "0.2")
    index_tree.write()
    (index_tree.root / "simple" / "index.v1_json").write_bytes(b"{not json")
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc != 0 and "malformed JSON" in json.dumps(summary)
    assert check_mirror(mirror_dir)["gamma"] == ["gamma-0.1-py3-none-any.whl"]


def test_state_totals_follow_every_change(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    """The running totals (what a no-op run and `status` report) equal a count of the state."""
    import sqlite3

    from mirror_sync.state import State

    def counted() -> tuple[int, int, int]:
        db = sqlite3.connect(mirror_dir / "state.sqlite")
        try:
            row = db.execute("SELECT (SELECT COUNT(*) FROM projects), (SELECT COUNT(*) FROM files), "
                             "(SELECT COALESCE(SUM(size), 0) FROM files)").fetchone()
            return int(row[0]), int(row[1]), int(row[2])
        finally:
            db.close()

    def kept() -> tuple[int, int, int]:
        state = State(mirror_dir / "state.sqlite", readonly=True)
        try:
            return state.totals()
        finally:
            state.close()

    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    assert run_cli(cfg, "sync")[0] == 0
    assert kept() == counted() and counted()[:2] == (5, 9)
    index_tree.add_wheel("gamma", "0.2")
    index_tree.delete_file("gamma", "gamma-0.1-py3-none-any.whl")
    index_tree.delete_project("legacy")
    index_tree.add_wheel("delta", "1.0")
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert kept() == counted() and counted()[:2] == (5, 9)
    assert (summary["projects"]["total"], summary["files"]["total"], summary["files"]["bytes_total"]) == counted()
    # a state from before the totals table: the next writer fills it from a count
    db = sqlite3.connect(mirror_dir / "state.sqlite")
    db.executescript("DROP TABLE totals;")
    db.close()
    assert kept() == counted()  # read-only and without the table: counted on the spot
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and (summary["projects"]["total"], summary["files"]["total"], summary["files"]["bytes_total"]) == counted()
    assert kept() == counted()


def test_incremental_changes_reach_the_mirror(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    assert run_cli(cfg, "sync")[0] == 0
    old_path = next(p for p in (mirror_dir / "web" / "packages").rglob("gamma-0.1-py3-none-any.whl"))
    index_tree.add_wheel("gamma", "0.2")
    index_tree.delete_file("gamma", "gamma-0.1-py3-none-any.whl")
    index_tree.yank("unrelated", "unrelated-5.0-py3-none-any.whl", "oops")
    index_tree.write()
    before = len(upstream.requests())
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert summary["projects"]["synced"] == 2
    assert summary["files"]["downloaded"] == 1 and summary["files"]["deleted"] == 1
    paths = sorted(r.path for r in upstream.requests()[before:])
    assert "/simple/gamma/" in paths and "/simple/unrelated/" in paths and "/simple/alpha/" not in paths
    assert not old_path.exists() and not old_path.with_name(old_path.name + ".metadata").exists()
    pages = check_mirror(mirror_dir)
    assert pages["gamma"] == ["gamma-0.2-py3-none-any.whl"]
    unrelated = json.loads((mirror_dir / "web/simple/unrelated/index.v1_json").read_text())
    assert unrelated["files"][0]["yanked"] == "oops"
    assert run_cli(cfg, "verify", "--full")[1]["ok"]


def test_deleted_projects_go_and_the_guard_stops_a_wipe(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    for i in range(10):
        index_tree.add_wheel(f"proj{i}", "1.0")
    index_tree.write()
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, max_delete_ratio=0.2)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.delete_project("proj3")
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and summary["projects"]["deleted"] == 1
    assert not (mirror_dir / "web/simple/proj3").exists()
    assert "proj3-1.0-py3-none-any.whl" not in mirrored_files(mirror_dir)
    root = json.loads((mirror_dir / "web/simple/index.v1_json").read_text())
    assert "proj3" not in {p["name"] for p in root["projects"]}

    # an upstream outage serving an empty root must not wipe the mirror
    for i in (0, 1, 2, 4, 5, 6, 7, 8, 9):
        index_tree.delete_project(f"proj{i}")
    index_tree.write()
    rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 4, summary
    assert "refusing" in summary["error"]
    assert len(check_mirror(mirror_dir)) == 9
    rc, summary, _ = run_cli(cfg, "sync", "--allow-mass-delete")
    assert rc == 0 and summary["projects"]["deleted"] == 9
    assert check_mirror(mirror_dir) == {}
    assert mirrored_files(mirror_dir) == set()


def test_no_delete_keeps_what_upstream_removed(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, delete=False)
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.delete_project("unrelated")
    index_tree.write()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and summary["projects"]["deleted"] == 0
    assert "unrelated" in check_mirror(mirror_dir)


def test_allowlist_follows_dependency_closure(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["alpha[fast]>=2"])
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    pages = check_mirror(mirror_dir)
    # alpha>=2 only; its deps beta>=2 (3.0rc1 too: prereleases are on) and the extra's gamma;
    # legacy's marker is false for every Python 3; unrelated is not asked for
    assert set(pages) == {"alpha", "beta", "gamma"}
    assert pages["alpha"] == ["alpha-2.0-py3-none-any.whl", "alpha-2.0.tar.gz"]
    assert pages["beta"] == ["beta-2.0-py3-none-any.whl", "beta-3.0rc1-py3-none-any.whl"]
    root = json.loads((mirror_dir / "web/simple/index.v1_json").read_text())
    # an allowlist reads no root index, only its projects' pages, whose PEP 691 `name` is the
    # normalized one: that is the name the mirror's root lists
    assert {p["name"] for p in root["projects"]} == {"alpha", "beta", "gamma"}

    # a no-op run keeps the closure from the state and asks upstream for the root only
    before = len(upstream.requests())
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and not summary["changed"]
    assert [r.path for r in upstream.requests()[before:]] == ["/simple/"]

    # dropping the extra from the allowlist prunes gamma
    write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["alpha>=2"], max_delete_ratio=0.5)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert set(check_mirror(mirror_dir)) == {"alpha", "beta"}


def test_closure_reads_requirements_from_sdists_without_metadata(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    index_tree.add_sdist("top", "1.0", requires_dist=["middle"])
    index_tree.add_wheel("middle", "1.0", requires_dist=["bottom"], with_metadata=False)
    index_tree.add_wheel("bottom", "1.0")
    index_tree.add_wheel("other", "1.0")
    index_tree.write()
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["top"])
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    pages = check_mirror(mirror_dir)
    assert set(pages) == {"top", "middle", "bottom"}
    # the wheel had no upstream .metadata: the mirror serves the wheel's own METADATA (PEP 658)
    middle = json.loads((mirror_dir / "web/simple/middle/index.v1_json").read_text())
    assert middle["files"][0]["core-metadata"]


def test_filters_environments_prereleases_latest_size(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    for version in ("1.0", "1.1", "1.2", "2.0b1"):
        index_tree.add_wheel("lib", version)
    index_tree.add_wheel("native", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    index_tree.add_wheel("native", "1.0", tag="cp311-cp311-win_amd64")
    index_tree.add_wheel("native", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    index_tree.add_wheel("native", "1.0", tag="cp38-abi3-manylinux_2_17_aarch64")
    index_tree.add_sdist("native", "1.0")
    index_tree.add_file("huge", "huge-1.0-py3-none-any.whl", b"x" * 5000)
    index_tree.add_wheel("huge", "0.9")
    index_tree.add_wheel("blocked", "1.0")
    index_tree.write()
    cfg = write_config(
        tmp_path / "m.yml",
        upstream.url,
        mirror_dir,
        environments=[{"python": "3.11", "platform": "linux", "machine": "x86_64"}],
        prereleases=False,
        latest=2,
        max_file_size=4000,
        exclude=["blocked", "lib==1.2"],
    )
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    pages = check_mirror(mirror_dir)
    assert "blocked" not in pages
    assert pages["lib"] == ["lib-1.0-py3-none-any.whl", "lib-1.1-py3-none-any.whl"]
    assert pages["native"] == ["native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "native-1.0.tar.gz"]
    assert pages["huge"] == ["huge-0.9-py3-none-any.whl"]
    lib = json.loads((mirror_dir / "web/simple/lib/index.v1_json").read_text())
    assert lib["versions"] == ["1.0", "1.1"]


def test_html_only_upstream(index_tree: IndexTree, tmp_path: Path, mirror_dir: Path) -> None:
    from tests.support.upstream_server import UpstreamServer

    populate(index_tree)
    with UpstreamServer(index_tree.root, html_only=True) as server:
        cfg = write_config(tmp_path / "m.yml", server.url, mirror_dir)
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0, summary
        pages = check_mirror(mirror_dir)
        assert len(pages) == 5
        beta = json.loads((mirror_dir / "web/simple/beta/index.v1_json").read_text())
        yanked = [f for f in beta["files"] if f["filename"] == "beta-1.0-py3-none-any.whl"][0]
        assert yanked["yanked"] == "broken: use 2.0 <or later> & \"more\""
        # without serials every page is read again, but nothing is rewritten or fetched
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0 and summary["files"]["downloaded"] == 0 and not summary["changed"]
        index_tree.add_wheel("gamma", "0.3")
        index_tree.write()
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0 and summary["files"]["downloaded"] == 1
        assert "gamma-0.3-py3-none-any.whl" in check_mirror(mirror_dir)["gamma"]


def test_mirror_of_a_mirror(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    """A second mirror-sync uses the first mirror as its upstream, incrementally by serial."""
    from tests.support.upstream_server import UpstreamServer

    populate(index_tree)
    primary = tmp_path / "primary"
    cfg1 = write_config(tmp_path / "p.yml", upstream.url, primary)
    assert run_cli(cfg1, "sync")[0] == 0
    with UpstreamServer(primary / "web") as served:
        downstream = tmp_path / "downstream"
        cfg2 = write_config(tmp_path / "d.yml", served.url, downstream)
        rc, summary, _ = run_cli(cfg2, "sync")
        assert rc == 0, summary
        assert check_mirror(downstream) == check_mirror(primary)
        index_tree.add_wheel("gamma", "0.2")
        index_tree.write()
        assert run_cli(cfg1, "sync")[0] == 0
        before = len(served.requests())
        rc, summary, _ = run_cli(cfg2, "sync")
        assert rc == 0 and summary["projects"]["synced"] == 1 and summary["files"]["downloaded"] == 1
        paths = [r.path for r in served.requests()[before:]]
        assert "/simple/alpha/" not in paths
        assert check_mirror(downstream) == check_mirror(primary)


def test_status_reports_serials_and_size(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    rc, status, _ = run_cli(cfg, "status")
    assert rc == 0 and status["initialized"] is False
    assert run_cli(cfg, "sync")[0] == 0
    rc, status, _ = run_cli(cfg, "status")
    assert rc == 0
    assert status["upstream_serial"] == status["mirror_serial"] == index_tree.serial
    assert status["lag_serials"] == 0 and status["projects"] == 5 and status["files"] == 9
    assert status["bytes"] == sum(f.size for p in index_tree.projects() for f in index_tree.files(p))
    assert status["last_result"] == "ok" and status["last_success"]


def test_dry_run_plans_and_writes_nothing(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    rc, summary, _ = run_cli(cfg, "sync", "--dry-run")
    assert rc == 0 and summary["dry_run"] and summary["changed"]
    assert len(summary["plan"]["fetch"]) == 9
    assert summary["plan"]["fetch_bytes"] == sum(f.size for p in index_tree.projects() for f in index_tree.files(p))
    assert not mirror_dir.exists()
    assert run_cli(cfg, "sync")[0] == 0
    index_tree.delete_file("gamma", "gamma-0.1-py3-none-any.whl")
    index_tree.add_wheel("gamma", "0.2")
    index_tree.write()
    snapshot = sorted(str(p) for p in mirror_dir.rglob("*") if "state.sqlite" not in p.name)
    rc, summary, _ = run_cli(cfg, "sync", "--dry-run")
    assert rc == 0
    assert [p["filename"] for p in summary["plan"]["fetch"]] == ["gamma-0.2-py3-none-any.whl"]
    assert len(summary["plan"]["delete"]) == 1
    assert sorted(str(p) for p in mirror_dir.rglob("*") if "state.sqlite" not in p.name) == snapshot


def test_large_run_uses_worker_processes_and_stays_consistent(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    from mirror_sync.runners import PROCESS_THRESHOLD

    count = PROCESS_THRESHOLD + 20
    for i in range(count):
        index_tree.add_wheel(f"bulk-{i:04d}", "1.0")
    index_tree.add_wheel("bulk-0007", "1.1")
    index_tree.write()
    upstream.add_fault("/simple/bulk-0003/", status=500, times=1000)  # one failure crosses the process boundary
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, workers=4, retries=0)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"] == [{"project": "bulk-0003", "error": f"project bulk-0003: upstream answered HTTP 500 ({upstream.url}bulk-0003/)"}]
    pages = check_mirror(mirror_dir)
    assert len(pages) == count - 1 and pages["bulk-0007"] == ["bulk_0007-1.0-py3-none-any.whl", "bulk_0007-1.1-py3-none-any.whl"]
    upstream.clear_faults()
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0 and summary["projects"]["synced"] == 1
    assert len(check_mirror(mirror_dir)) == count


def test_verify_reading_ahead_finds_each_problem_at_its_file(tmp_path: Path) -> None:
    """check_files opens files ahead of the one it hashes (on threads, in groups): every result
    still belongs to its own file, wherever the problem sits in a long list."""
    import hashlib

    from mirror_sync.verify import READ_AHEAD, check_files

    web = tmp_path / "web"
    items = []
    for i in range(READ_AHEAD * 3 + 5):
        body = f"file {i}".encode() * (i + 1)
        meta = f"meta {i}".encode()
        path = f"packages/{i:03d}/f-{i}.whl"
        (web / path).parent.mkdir(parents=True)
        (web / path).write_bytes(body)
        (web / (path + ".metadata")).write_bytes(meta)
        mtime = (web / path).stat().st_mtime_ns
        items.append((path, len(body), hashlib.sha256(body).hexdigest(), mtime, hashlib.sha256(meta).hexdigest()))
    missing, corrupt, meta_gone, meta_bad = 3, READ_AHEAD + 7, READ_AHEAD * 2 + 1, len(items) - 1
    (web / items[missing][0]).unlink()
    data = (web / items[corrupt][0]).read_bytes()
    (web / items[corrupt][0]).write_bytes(bytes([data[0] ^ 1]) + data[1:])
    (web / (items[meta_gone][0] + ".metadata")).unlink()
    (web / (items[meta_bad][0] + ".metadata")).write_bytes(b"other")
    results = check_files(str(web), items, True)
    assert len(results) == len(items)
    for i, (problem, _mtime, meta_problem) in enumerate(results):
        assert problem == ("missing" if i == missing else "corrupt" if i == corrupt else None), i
        assert meta_problem == ("missing" if i == meta_gone else "corrupt" if i == meta_bad else None), i


def _plan_and_run(cfg: Path, mirror_dir: Path) -> tuple[dict, dict]:
    rc, plan, stderr = run_cli(cfg, "sync", "--dry-run")
    assert rc == 0, (plan, stderr)
    before = mirrored_files(mirror_dir) if mirror_dir.exists() else set()
    rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 0, (summary, stderr)
    after = mirrored_files(mirror_dir)
    assert sorted(f["filename"] for f in plan["plan"]["fetch"]) == sorted(after - before)
    assert summary["files"]["downloaded"] == len(plan["plan"]["fetch"])
    deleted_names = sorted(Path(d["path"]).name for d in plan["plan"]["delete"])
    assert deleted_names == sorted(before - after)
    assert plan["projects"]["synced"] == summary["projects"]["synced"]
    return plan, summary


def test_the_dry_run_plans_exactly_what_the_run_then_does(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    """One code path: on a fresh mirror (with a dependency named only inside a wheel whose
    metadata upstream does not advertise), after upstream adds releases, and after the filter
    changes, the dry run's plan is what the run fetches and deletes."""
    index_tree.add_wheel("app", "1.0", requires_dist=["hidden"], with_metadata=False)
    index_tree.add_wheel("hidden", "1.0", requires_dist=["deep>=1"])
    index_tree.add_wheel("deep", "1.0")
    index_tree.add_wheel("deep", "2.0")
    index_tree.write()
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["app"], max_delete_ratio=1.0)
    plan, _ = _plan_and_run(cfg, mirror_dir)
    assert {f["project"] for f in plan["plan"]["fetch"]} == {"app", "hidden", "deep"}

    index_tree.add_wheel("app", "2.0", requires_dist=["hidden", "extra-lib"], with_metadata=False)
    index_tree.add_wheel("extra-lib", "1.0")
    index_tree.write()
    plan, _ = _plan_and_run(cfg, mirror_dir)
    assert sorted(f["filename"] for f in plan["plan"]["fetch"]) == ["app-2.0-py3-none-any.whl", "extra_lib-1.0-py3-none-any.whl"]

    write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["app"], latest=1, max_delete_ratio=1.0)
    plan, _ = _plan_and_run(cfg, mirror_dir)
    assert sorted(Path(d["path"]).name for d in plan["plan"]["delete"]) == ["app-1.0-py3-none-any.whl", "deep-1.0-py3-none-any.whl"]

    rc, plan, _ = run_cli(cfg, "sync", "--dry-run")
    assert rc == 0 and plan["plan"] == {"fetch": [], "delete": [], "fetch_bytes": 0, "delete_bytes": 0}


def _web_snapshot(mirror_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(mirror_dir)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted((mirror_dir / "web").rglob("*")) + [mirror_dir / "serials.map"] if p.is_file()}


@pytest.mark.parametrize("html_only", [False, True])
def test_without_serials_validators_and_content_decide_and_an_unchanged_run_writes_nothing(
    index_tree: IndexTree, tmp_path: Path, html_only: bool
) -> None:
    """An upstream like the real index (no X-PyPI-Last-Serial) or a proxy serving a static mirror
    (HTML only, ETag / Last-Modified): conditional requests where validators were sent, and a run
    that finds nothing new rewrites no page, no file and no root."""
    populate(index_tree)
    index_tree.write()
    mirror_dir = tmp_path / "mirror"
    with UpstreamServer(index_tree.root, html_only=html_only, validators=True, serials=False) as server:
        cfg = write_config(tmp_path / "m.yml", server.url, mirror_dir, projects=["alpha[fast]>=2"])
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0, summary
        snapshot = _web_snapshot(mirror_dir)
        before = len(server.requests())
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0 and summary["changed"] is False and summary["projects"]["synced"] == 0
        pages = [r for r in server.requests()[before:] if r.path.startswith("/simple/") and r.path != "/simple/"]
        assert sorted(r.path for r in pages) == ["/simple/alpha/", "/simple/beta/", "/simple/gamma/"]
        assert {r.status for r in pages} == {304}
        assert _web_snapshot(mirror_dir) == snapshot  # nothing was rewritten

        index_tree.add_wheel("beta", "2.5")
        index_tree.write()
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0 and summary["changed"] is True and summary["projects"]["synced"] == 1
        assert "beta-2.5-py3-none-any.whl" in check_mirror(mirror_dir)["beta"]


def test_latest_keeps_per_environment_and_an_allowlisted_project_with_nothing_installable_fails(
    index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path
) -> None:
    """`latest: 1` with Python 3.11 and 3.12: the newest release needs 3.12, so 3.11 gets the
    newest one it can install, and its dependencies are followed. A project with only Linux
    wheels fails for a macOS environment, naming both; the rest is mirrored (exit 1)."""
    index_tree.add_wheel("web", "5.0", requires_python=">=3.12", requires_dist=["new-dep"])
    index_tree.add_wheel("web", "4.2", requires_python=">=3.10", requires_dist=["old-dep"])
    index_tree.add_wheel("web", "4.1", requires_python=">=3.10", requires_dist=["old-dep"])
    index_tree.add_wheel("new-dep", "1.0")
    index_tree.add_wheel("old-dep", "1.0")
    index_tree.add_wheel("native", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    index_tree.write()
    envs = [{"python": "3.11", "platform": "linux", "machine": "x86_64"}, {"python": "3.12", "platform": "linux", "machine": "x86_64"}]
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["web"], environments=envs, latest=1)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    pages = check_mirror(mirror_dir)
    assert pages["web"] == ["web-4.2-py3-none-any.whl", "web-5.0-py3-none-any.whl"]
    assert set(pages) == {"web", "new-dep", "old-dep"}

    envs.append({"python": "3.12", "platform": "macos", "machine": "arm64"})
    write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["web", "native"], environments=envs, latest=1)
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 1
    assert summary["failures"] == [{
        "project": "native",
        "error": "project native: no release has a file installable on python 3.12 linux x86_64, python 3.12 macos arm64",
    }]
    assert set(check_mirror(mirror_dir)) == {"web", "new-dep", "old-dep", "native"}


def test_workers_bounds_the_connections_to_upstream(index_tree: IndexTree, tmp_path: Path) -> None:
    """`workers` is the number of requests in flight, and of connections: project threads and
    file threads share one pool per origin."""
    for i in range(40):
        index_tree.add_wheel(f"many{i:02d}", "1.0")
        index_tree.add_wheel(f"many{i:02d}", "2.0")
        index_tree.add_sdist(f"many{i:02d}", "2.0")
    index_tree.write()
    with UpstreamServer(index_tree.root) as server:
        cfg = write_config(tmp_path / "m.yml", server.url, tmp_path / "mirror", workers=3)
        rc, summary, _ = run_cli(cfg, "sync")
        assert rc == 0, summary
        assert summary["files"]["downloaded"] == 120
        assert server.peak_connections <= 3, server.peak_connections
        assert server.connections_accepted <= 3 * 2, server.connections_accepted  # reused, not one per request


def test_a_sync_writes_the_front_page_with_its_numbers(index_tree: IndexTree, upstream, tmp_path: Path, mirror_dir: Path) -> None:
    populate(index_tree)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir, projects=["alpha"])
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    page = (mirror_dir / "web" / "index.html").read_text()
    assert f"<tr><th>Projects</th><td>{summary['projects']['total']}</td></tr>" in page
    assert f"<tr><th>Files</th><td>{summary['files']['total']}</td></tr>" in page
    assert "pip install --index-url" in page and "uv.toml" in page
    rc, plan, _ = run_cli(cfg, "sync", "--dry-run")
    assert rc == 0 and (mirror_dir / "web" / "index.html").read_text() == page  # a dry run writes nothing


def test_a_finished_project_goes_live_while_the_run_waits_on_a_slow_one(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, mirror_dir: Path
) -> None:
    """The publisher does not hold what is done until the end of the run: while the run waits on
    the network (here one project's page is answered only after 6 s), the finished projects are
    published, their files first. Ordered by events, not by a clock: beta's page is on disk
    before upstream has answered the slow page at all."""
    import subprocess
    import sys
    import time

    populate(index_tree)
    upstream.add_fault("/simple/unrelated/", delay=6.0)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror_dir)
    env = cli_env()
    proc = subprocess.Popen([sys.executable, "-m", "mirror_sync", "-c", str(cfg), "sync", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    page = mirror_dir / "web" / "simple" / "beta" / "index.v1_json"
    try:
        for _ in range(600):  # bounded: 30 s
            if page.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        slow_answered = bool(upstream.requests("/simple/unrelated/"))
        assert page.exists(), "beta's page was not published before the run ended"
        assert not slow_answered, "beta's page came only after the slow page: published at the end"
        live = check_mirror(mirror_dir)  # what is live mid-run links only to files that are there
        assert "beta" in live and "unrelated" not in live
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["ok"]
    assert set(check_mirror(mirror_dir)) == {"alpha", "beta", "gamma", "legacy", "unrelated"}
