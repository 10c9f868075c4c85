"""The dependency closure and the selection it rests on, as pure functions: unit tests and
property-based tests (hypothesis)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from mirror_sync.plan.closure import DependencyEvaluator, Visit, walk
from mirror_sync.config import Config, Environment
from mirror_sync.environments import marker_environments
from mirror_sync.models import ProjectPage, UpstreamFile
from mirror_sync.plan.selection import Selector, Want

# -- a tiny upstream: project -> version -> Requires-Dist ------------------------------------------
Index = dict[str, dict[str, list[str]]]


class FakeVisitor:
    """Visits over `index`, reported in random order: a want selects every version one of its
    specifiers admits."""

    def __init__(self, index: Index, seen: Optional[list[tuple[str, Want]]] = None, rnd: Optional[random.Random] = None) -> None:
        self.index = index
        self.seen = seen
        self.rnd = rnd
        self.queue: list[tuple[str, Want]] = []

    def submit(self, name: str, want: Want) -> None:
        if self.seen is not None:
            self.seen.append((name, want.copy()))
        self.queue.append((name, want))

    def next_done(self) -> tuple[str, Visit]:
        name, want = self.queue.pop(self.rnd.randrange(len(self.queue)) if self.rnd else 0)
        return name, visit(self.index, name, want)


def visit(index: Index, name: str, want: Want) -> Visit:
    if name not in index:
        return Visit(missing=True)
    lines: set[str] = set()
    for version, requires in index[name].items():
        if any(s is None or SpecifierSet(s).contains(Version(version), prereleases=True) for s in want.specifiers):
            lines.update(requires)
    return Visit(requires=tuple(sorted(lines)))


NEEDED = DependencyEvaluator(marker_environments(None)).needed


def reference_fixpoint(index: Index, roots: list[str]) -> dict[str, str]:
    """The closure computed the slow, obvious way: re-derive every want from scratch until
    nothing changes."""
    wants: dict[str, Want] = {}
    for r in roots:
        req = Requirement(r)
        wants.setdefault(req.name, Want()).add(req)
    for _ in range(1000):
        before = {k: v.key() for k, v in wants.items()}
        for name, want in list(wants.items()):
            for dep in NEEDED(visit(index, name, want).requires, frozenset(want.extras)):
                wants.setdefault(dep.name, Want()).add(dep)
        if {k: v.key() for k, v in wants.items()} == before:
            return before
    raise AssertionError("no fixpoint")


def test_the_walk_follows_requirements_and_extras_and_names_who_pulled_a_missing_one() -> None:
    index: Index = {
        "app": {"1.0": ["lib>=1", 'extra-dep; extra == "x"'], "2.0": ["lib>=2"]},
        "lib": {"1.0": [], "2.0": ["util"], "3.0": ["util", "ghost"]},
        "util": {"1.0": []},
        "extra-dep": {"1.0": []},
    }
    closure = walk([Requirement("app[x]==1.0")], FakeVisitor(index), NEEDED)
    assert {k: v.key() for k, v in closure.wants.items()} == {
        "app": "==1.0[x]", "lib": ">=1[]", "extra-dep": "*[]", "util": "*[]", "ghost": "*[]",
    }
    assert closure.failures == {"ghost": "dependency 'ghost' of lib is not on upstream"}
    assert closure.required_by["util"] == "lib"


def test_an_allowlisted_project_that_upstream_lacks_is_named_as_such() -> None:
    closure = walk([Requirement("nope")], FakeVisitor({}), NEEDED)
    assert closure.failures == {"nope": "project 'nope' from 'projects' is not on upstream"}


def test_excluded_projects_are_neither_visited_nor_wanted() -> None:
    seen: list[tuple[str, Want]] = []
    index: Index = {"a": {"1": ["b", "c"]}, "b": {"1": []}, "c": {"1": []}}
    closure = walk([Requirement("a")], FakeVisitor(index, seen), NEEDED, excluded=lambda n: n == "b")
    assert set(closure.wants) == {"a", "c"}
    assert "b" not in {name for name, _ in seen}


def test_without_follow_only_the_allowlist_is_visited() -> None:
    index: Index = {"a": {"1": ["b"]}, "b": {"1": []}}
    closure = walk([Requirement("a")], FakeVisitor(index), NEEDED, follow=False)
    assert set(closure.wants) == {"a"}


def test_a_project_is_visited_again_only_when_its_want_widened() -> None:
    seen: list[tuple[str, Want]] = []
    index: Index = {"a": {"1": ["c>=1"]}, "b": {"1": ["c>=2"]}, "c": {"1": [], "2": []}, "top": {"1": ["a", "b"]}}
    walk([Requirement("top")], FakeVisitor(index, seen), NEEDED)
    visits_of = {name: [w.key() for n, w in seen if n == name] for name in index}
    assert visits_of["top"] == ["*[]"]
    assert visits_of["c"] == [">=1[]", ">=1|>=2[]"]  # visited again once b widened it
    walk([Requirement("c>=1")], FakeVisitor(index, seen := []), NEEDED)
    assert [n for n, _ in seen] == ["c"]  # nothing widened: one visit


# -- properties -------------------------------------------------------------------------------------
NAMES = ["p0", "p1", "p2", "p3", "p4", "p5"]
VERSIONS = ["1.0", "1.5", "2.0", "3.0"]
SPECS = ["", ">=1.5", "<2", "==2.0", ">=3", "!=1.0"]


@st.composite
def indexes(draw: st.DrawFn) -> tuple[Index, list[str]]:
    index: Index = {}
    for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True)):
        versions = draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=4, unique=True))
        index[name] = {
            v: [f"{dep}{spec}" for dep, spec in draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(SPECS)), max_size=3))]
            for v in versions
        }
    roots = [f"{n}{s}" for n, s in draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(SPECS)), min_size=1, max_size=3))]
    return index, roots


@settings(max_examples=200, deadline=None)
@given(indexes(), st.randoms(use_true_random=False))
def test_the_walk_reaches_the_one_fixpoint_whatever_the_order(case: tuple[Index, list[str]], rnd: random.Random) -> None:
    index, roots = case
    expected = reference_fixpoint(index, roots)
    first = walk([Requirement(r) for r in roots], FakeVisitor(index), NEEDED)
    shuffled_roots = list(roots)
    rnd.shuffle(shuffled_roots)
    second = walk([Requirement(r) for r in shuffled_roots], FakeVisitor(index, rnd=rnd), NEEDED)
    assert {k: v.key() for k, v in first.wants.items()} == expected
    assert {k: v.key() for k, v in second.wants.items()} == expected  # plan twice: the same plan
    assert first.failures == second.failures
    assert set(first.failures) <= set(first.wants) - set(index)  # only what upstream lacks fails


# -- selection --------------------------------------------------------------------------------------
def config(**keys: object) -> Config:
    return Config(path=Path("m.yml"), upstream="http://upstream.invalid/simple/", directory=Path("/m"), **keys)  # type: ignore[arg-type]


def wheel(name: str, version: str, tag: str = "py3-none-any", requires_python: Optional[str] = None) -> UpstreamFile:
    filename = f"{name}-{version}-{tag}.whl"
    return UpstreamFile(filename, f"http://files.invalid/{filename}", "0" * 64, 100, requires_python, version=version)


def sdist(name: str, version: str, requires_python: Optional[str] = None) -> UpstreamFile:
    filename = f"{name}-{version}.tar.gz"
    return UpstreamFile(filename, f"http://files.invalid/{filename}", "1" * 64, 100, requires_python, version=version)


def page(name: str, files: list[UpstreamFile]) -> ProjectPage:
    return ProjectPage(name=name, canonical=name, serial=1, files=files)


PY311 = Environment(python="3.11", platform="linux", machine="x86_64")
PY312 = Environment(python="3.12", platform="linux", machine="x86_64")


def test_latest_counts_the_releases_each_environment_can_install() -> None:
    """The newest releases need Python 3.12 (as Django's do): a 3.11 environment still gets the
    two newest it can install, and a 3.12 environment the two newest overall."""
    django = page("django", [
        wheel("django", "6.0", requires_python=">=3.12"), sdist("django", "6.0", requires_python=">=3.12"),
        wheel("django", "5.2", requires_python=">=3.10"), sdist("django", "5.2", requires_python=">=3.10"),
        wheel("django", "5.1", requires_python=">=3.10"),
        wheel("django", "5.0", requires_python=">=3.10"),
        wheel("django", "5.3", requires_python=">=3.12"),
    ])
    only_311 = Selector(config(environments=(PY311,), latest=2))
    files, _ = only_311.select(django, None)
    assert sorted({f.version for f in files}) == ["5.1", "5.2"]
    both = Selector(config(environments=(PY311, PY312), latest=2))
    files, _ = both.select(django, None)
    assert sorted({f.version for f in files}) == ["5.1", "5.2", "5.3", "6.0"]
    assert both.uninstallable(files) == []


def test_a_project_with_nothing_for_an_environment_is_named_with_it() -> None:
    selector = Selector(config(environments=(PY311, Environment(python="3.12", platform="macos", machine="arm64")), latest=1))
    files, _ = selector.select(page("native", [wheel("native", "1.0", "cp311-cp311-manylinux_2_17_x86_64")]), None)
    assert [f.version for f in files] == ["1.0"]
    assert selector.uninstallable(files) == ["python 3.12 macos arm64"]


def test_wheel_tags_decide_per_environment() -> None:
    files = [wheel("n", "2.0", "cp312-cp312-manylinux_2_17_x86_64"), wheel("n", "1.0", "cp311-cp311-manylinux_2_17_x86_64")]
    chosen, _ = Selector(config(environments=(PY311,), latest=1)).select(page("n", files), None)
    assert [f.version for f in chosen] == ["1.0"]


SELECT_VERSIONS = ["0.9", "1.0", "1.1rc1", "1.1", "2.0", "2.1.dev0", "3.0"]
SELECT_SPECS = [None, ">=1.0", "<2", "==2.0", ">=3", "!=1.0", ">=1.1rc1"]


@st.composite
def selections(draw: st.DrawFn) -> tuple[Selector, ProjectPage, Want, Want]:
    files = []
    for v in draw(st.lists(st.sampled_from(SELECT_VERSIONS), min_size=1, unique=True)):
        rp = draw(st.sampled_from([None, ">=3.12", ">=3.8"]))
        tag = draw(st.sampled_from(["py3-none-any", "cp311-cp311-manylinux_2_17_x86_64", "cp312-cp312-win_amd64"]))
        files.append(wheel("p", v, tag, rp))
        if draw(st.booleans()):
            files.append(sdist("p", v, rp))
    envs = draw(st.sampled_from([None, (PY311,), (PY311, PY312)]))
    cfg = config(environments=envs, latest=draw(st.sampled_from([None, 1, 2])), prereleases=draw(st.booleans()))
    small = Want(set(draw(st.lists(st.sampled_from(SELECT_SPECS), min_size=1, max_size=2))))
    extra = draw(st.lists(st.sampled_from(SELECT_SPECS), min_size=1, max_size=2))
    big = Want(small.specifiers | set(extra))
    return Selector(cfg), page("p", files), small, big


@settings(max_examples=300, deadline=None)
@given(selections())
def test_selection_is_monotone_in_the_want(case: tuple[Selector, ProjectPage, Want, Want]) -> None:
    selector, project, small, big = case
    fewer = {f.filename for f in selector.select(project, small)[0]}
    more = {f.filename for f in selector.select(project, big)[0]}
    assert fewer <= more
    assert more <= {f.filename for f in project.files}  # the plan never leaves upstream's files
    again = {f.filename for f in selector.select(project, big)[0]}
    assert again == more


@settings(max_examples=300, deadline=None)
@given(selections())
def test_a_narrower_want_selects_the_same_from_last_times_files_as_from_the_page(case: tuple[Selector, ProjectPage, Want, Want]) -> None:
    """What lets an unchanged page go unparsed: for a want within last run's, selecting from
    the files last run kept gives exactly what selecting from the whole page gives."""
    selector, project, small, big = case
    assert small.within(big.key())
    kept = selector.select(project, big)[0]
    from_page = sorted(f.filename for f in selector.select(project, small)[0])
    from_kept = sorted(f.filename for f in selector.select(page("p", kept), small)[0])
    assert from_kept == from_page


def test_within_reads_a_want_back_from_its_key() -> None:
    want = Want({None, ">=2"}, {"fast"})
    assert want.within(want.key())
    assert Want({">=2"}).within(want.key())
    assert not Want({">=3"}).within(want.key())
    assert not Want({None}, {"slow"}).within(want.key())
    assert not want.within(None) and not want.within("garbage")


def test_a_run_forgets_what_it_learnt_of_a_projects_files_once_it_is_synced(tmp_path: Path) -> None:
    """The run-wide caches of files (downloads, METADATA, Requires-Dist) hold a project's entries
    only until that project's run: a full mirror must not keep every file's metadata."""
    from mirror_sync.project_sync import ProjectSyncer, ProjectTask

    class NoUpstream:
        def project(self, *a: object, **k: object) -> ProjectPage:
            raise AssertionError("the page is given")

    files = [wheel("p", "1.0"), wheel("p", "2.0")]
    syncer = ProjectSyncer(NoUpstream(), None, Selector(config()), tmp_path / "web/simple", tmp_path / "web",  # type: ignore[arg-type]
                           need_requires=True, fsync=False, dry_run=True)
    for f in files:  # what a closure walk's visit would have left
        key = (f.filename, f.sha256)
        syncer.requires[key] = ["x"]
        syncer.metadata_docs[key] = b"Metadata-Version: 2.1\n"
    task = ProjectTask("p", "p", None, None, "s", [], None, None, page=page("p", files))
    result = syncer.run(task)
    assert sorted(f["filename"] for f in result.plan_fetch) == sorted(f.filename for f in files)
    assert all(f.requires_dist == ["x"] for f in result.files)  # used while the project ran
    assert syncer.requires == {} and syncer.metadata_docs == {} and syncer.fetched == {}
