"""The planner on its own: one project's plan and the run's deletions (pure functions)."""
from __future__ import annotations

import doctest
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mirror_sync.plan.project as project_module
from mirror_sync.config import config_from_mapping
from mirror_sync.errors import DeleteGuardError
from mirror_sync.models import MirroredFile, ProjectPage, UpstreamFile
from mirror_sync.plan.deletions import guard_deletions, plan_deletions
from mirror_sync.plan.project import (
    CHANGED,
    MISSING,
    NEW,
    QUARANTINED,
    REMOVED,
    REPLACED,
    UNSELECTED,
    plan_project,
    select_all,
)
from mirror_sync.plan.selection import Selector, Want


def _sha(n: int) -> str:
    return f"{n:064x}"


def _up(name: str, version: str, n: int, size: int = 100) -> UpstreamFile:
    filename = f"{name}-{version}-py3-none-any.whl"
    return UpstreamFile(filename, f"https://files.upstream.invalid/{filename}", _sha(n), size, version=version)


def _held(f: UpstreamFile, sha: Optional[str] = None) -> MirroredFile:
    sha = sha or f.sha256 or ""
    return MirroredFile("demo", f.filename, f"packages/{sha[:2]}/{sha[2:4]}/{sha[4:]}/{f.filename}", f.url,
                        f.size or 0, sha, None, False, None, None, None, f.version)


def _page(files: list[UpstreamFile]) -> ProjectPage:
    return ProjectPage("Demo", "demo", 1, files)


def test_the_module_doctest_holds() -> None:
    assert doctest.testmod(project_module).failed == 0


def test_new_changed_missing_kept_and_each_deletion_has_its_reason() -> None:
    a1, a2, b1, c1 = _up("demo", "1.0", 1), _up("demo", "2.0", 2, size=5000), _up("demo", "3.0", 3), _up("demo", "4.0", 4)
    old_a2 = _held(a2, sha=_sha(99))  # same name, other content upstream now
    gone = _held(_up("demo", "0.1", 7))  # upstream no longer lists it
    previous = [_held(a1), old_a2, _held(b1), gone]
    on_disk = {previous[0].path, old_a2.path, gone.path}  # b1's file vanished from disk
    plan = plan_project(_page([a1, a2, b1, c1]), None, previous, select_all, on_disk)
    assert [(f.filename, why) for f, why in plan.fetch] == [
        (a2.filename, CHANGED),  # the biggest first
        (b1.filename, MISSING),
        (c1.filename, NEW),
    ]
    assert [old.filename for _f, old in plan.keep] == [a1.filename]
    assert [(old.filename, why) for old, why in plan.delete] == [(old_a2.filename, REPLACED), (gone.filename, REMOVED)]
    assert [f.filename for f, _old in plan.jobs()] == [a2.filename, b1.filename, c1.filename, a1.filename]


def test_a_file_the_filters_no_longer_select_is_deleted_as_unselected() -> None:
    cfg = config_from_mapping({"directory": "/m", "upstream": "https://upstream.invalid/simple/", "latest": 1}, Path("/m.yml"))
    a1, a2 = _up("demo", "1.0", 1), _up("demo", "2.0", 2)
    plan = plan_project(_page([a1, a2]), None, [_held(a1), _held(a2)], Selector(cfg).select)
    assert [f.filename for f, _ in plan.keep] == [a2.filename]
    assert [(f.filename, why) for f, why in plan.delete] == [(a1.filename, UNSELECTED)]
    assert plan.fetch == ()


# -- properties ----------------------------------------------------------------------------------
versions = st.sampled_from(["1.0", "1.1", "2.0", "2.1rc1", "3.0"])
upstream_files = st.lists(st.tuples(versions, st.integers(0, 5), st.integers(0, 10_000)), max_size=8).map(
    lambda items: list({v: _up("demo", v, n, size) for v, n, size in items}.values())
)


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[UpstreamFile], list[MirroredFile], set[str], Optional[Want]]:
    files = draw(upstream_files)
    held_upstream = draw(st.lists(st.tuples(versions, st.integers(0, 5)), max_size=6))
    previous = list({v: _held(_up("demo", v, n)) for v, n in held_upstream}.values())
    on_disk = {f.path for f in previous if draw(st.booleans())}
    spec = draw(st.sampled_from([None, ">=2", "<2", "==1.0"]))
    want = None if spec is None else Want({spec}, set())
    return files, previous, on_disk, want


SELECTOR = Selector(config_from_mapping({"directory": "/m", "upstream": "https://upstream.invalid/simple/"}, Path("/m.yml")))


@settings(max_examples=300, deadline=None)
@given(situations())
def test_plan_properties(situation: tuple[list[UpstreamFile], list[MirroredFile], set[str], Optional[Want]]) -> None:
    files, previous, on_disk, want = situation
    page = _page(files)
    plan = plan_project(page, want, previous, SELECTOR.select, on_disk)
    # planning twice gives the same plan
    assert plan == plan_project(page, want, previous, SELECTOR.select, on_disk)
    # the plan is within upstream: every file it fetches or keeps is one upstream lists
    listed = {(f.filename, f.sha256) for f in files}
    assert {(f.filename, f.sha256) for f, _ in plan.fetch} <= listed
    assert {(f.filename, f.sha256) for f, _ in plan.keep} <= listed
    # no action listed twice: a filename is fetched or kept, once; a mirrored path is kept or deleted, once
    names = [f.filename for f, _ in plan.fetch] + [f.filename for f, _ in plan.keep]
    assert len(names) == len(set(names))
    paths = [old.path for _, old in plan.keep] + [old.path for old, _ in plan.delete]
    assert len(paths) == len(set(paths))
    # what the selection picks is exactly what the pages will list
    selected, _ = SELECTOR.select(page, want)
    assert sorted(names) == sorted(f.filename for f in selected)
    # what is kept is on disk; every mirrored file the pages drop is deleted
    assert all(old.path in on_disk for _, old in plan.keep)
    accounted = {old.path for _, old in plan.keep} | {p.path for p in previous if any(
        f.filename == p.filename and f.sha256 == p.sha256 for f, why in plan.fetch if why == MISSING)}
    assert {old.path for old, _ in plan.delete} == {p.path for p in previous} - accounted
    # the biggest fetch goes first
    sizes = [f.size or 0 for f, _ in plan.fetch]
    assert sizes == sorted(sizes, reverse=True)


# -- deletions -----------------------------------------------------------------------------------
def test_deletions_keep_what_failed_and_what_an_incomplete_closure_did_not_reach() -> None:
    held = ["a", "b", "c", "d"]
    full = plan_deletions(held, {"a"}, {"b"}, {"c"}, delete_gone=True, closure_complete=True)
    assert full.gone_upstream == ("a",) and full.unselected == ("d",)
    assert plan_deletions(held, {"a"}, {"b"}, {"c"}, delete_gone=False, closure_complete=True).names == ["d"]
    assert plan_deletions(held, {"a"}, {"b"}, set(), delete_gone=True, closure_complete=False).names == ["a"]


def test_the_guard_refuses_an_empty_root_and_a_large_share() -> None:
    every = plan_deletions(["a", "b"], {"a", "b"}, set(), set(), delete_gone=True, closure_complete=True)
    with pytest.raises(DeleteGuardError, match="lists no projects"):
        guard_deletions(every, 2, root_empty=True, max_ratio=0.5, allow_mass_delete=False)
    with pytest.raises(DeleteGuardError, match="would delete 2 of 2"):
        guard_deletions(every, 2, root_empty=False, max_ratio=0.5, allow_mass_delete=False)
    guard_deletions(every, 2, root_empty=True, max_ratio=0.5, allow_mass_delete=True)


@given(st.lists(st.sampled_from("abcdefgh"), unique=True), st.sets(st.sampled_from("abcdefgh")),
       st.sets(st.sampled_from("abcdefgh")), st.sets(st.sampled_from("abcdefgh")), st.booleans(), st.booleans())
def test_deletions_only_touch_held_projects_never_failed_ones_for_being_unselected(
    held: list[str], gone: set[str], wanted: set[str], failed: set[str], delete_gone: bool, complete: bool
) -> None:
    d = plan_deletions(held, gone, wanted, failed, delete_gone=delete_gone, closure_complete=complete)
    assert set(d.names) <= set(held)
    assert not set(d.unselected) & (failed | wanted | gone)
    assert len(d.names) == len(set(d.names))


# -- the policy and PEP 792 in the plan ------------------------------------------------------------
def test_a_quarantined_project_offers_no_files_and_its_mirrored_files_go() -> None:
    a1 = _up("demo", "1.0", 1)
    page = ProjectPage("Demo", "demo", 1, [a1], status={"status": "quarantined", "reason": "malware"})
    plan = plan_project(page, None, [_held(a1)], SELECTOR.select)
    assert plan.fetch == () and plan.keep == ()
    assert [(f.filename, why) for f, why in plan.delete] == [(a1.filename, QUARANTINED)]


def test_the_policy_is_a_rule_of_the_selection_and_the_plan_says_what_it_keeps_out() -> None:
    from datetime import datetime, timedelta, timezone

    from mirror_sync.policy.rules import Policy
    from mirror_sync.policy.settings import PolicySettings

    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    old, new = (now - timedelta(days=30)).isoformat(), (now - timedelta(hours=1)).isoformat()
    a1, a2, a3 = _up("demo", "1.0", 1), _up("demo", "2.0", 2), _up("demo", "3.0", 3)
    a1.upload_time, a2.upload_time, a3.upload_time = old, old, new
    cfg = config_from_mapping({"directory": "/m", "upstream": "https://upstream.invalid/simple/", "latest": 1}, Path("/m.yml"))
    selector = Selector(cfg, Policy(PolicySettings(cooldown=timedelta(days=1)), None, now))
    mirrored = [_held(a2), _held(a3)]  # 3.0 got in before the cooldown was configured
    plan = plan_project(_page([a1, a2, a3]), None, mirrored, selector.select, None, selector.refusals)
    # latest 1 counts among what passed: 2.0, not the cooling 3.0
    assert [f.filename for f, _old in plan.keep] == [a2.filename] and plan.fetch == ()
    assert [(f.filename, why) for f, why in plan.delete] == [(a3.filename, "held (cooldown)")]
    assert [(f.filename, r.rule) for f, r in plan.refused] == [(a3.filename, "cooldown")]
    assert plan.matures == (now + timedelta(days=1) - timedelta(hours=1)).timestamp()
    entry = plan.refused_report()[0]
    assert entry["kind"] == "held" and entry["matures"] == "2026-06-01T23:00:00Z"
    # the organisation's own files pass whatever their upload-time
    mine = UpstreamFile(a3.filename, "local:/srv/local/x.whl", a3.sha256, 100, upload_time=new, version="3.0", local=True)
    assert [f.filename for f in selector.select(_page([a1, mine]), None)[0]] == [mine.filename]


def test_the_policy_guard_counts_what_the_policy_would_take_out() -> None:
    from mirror_sync.plan.deletions import guard_policy

    files = [("a", "1.0", None), ("b", "1.0", None), ("c", "1.0", None), ("d", "1.0", None)]
    guard_policy(files, lambda p, v, t: p == "a", max_ratio=0.25)  # 1 of 4: at the limit, allowed
    with pytest.raises(DeleteGuardError, match="would take 2 of the mirror's 4 files out"):
        guard_policy(files, lambda p, v, t: p in ("a", "b"), max_ratio=0.25)
    guard_policy([], lambda p, v, t: True, max_ratio=0.0)  # an empty mirror loses nothing
