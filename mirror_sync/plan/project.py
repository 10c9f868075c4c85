"""One project's plan: given upstream's page, what is asked of the project and what the mirror
holds, which files to fetch, keep and delete, and why.

Pure: the dry run reports the plan and the run carries it out (project_sync.py), from the same
call, so the two cannot disagree.

>>> from mirror_sync.models import ProjectPage, UpstreamFile
>>> page = ProjectPage("Demo", "demo", None, [UpstreamFile("demo-1.0.tar.gz", "https://u/demo-1.0.tar.gz", "ab" * 32, 10)])
>>> plan = plan_project(page, None, [], select_all)
>>> [(f.filename, reason) for f, reason in plan.fetch]
[('demo-1.0.tar.gz', 'new')]
>>> plan.delete
()
"""
from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ..models import MirroredFile, ProjectPage, UpstreamFile
from .selection import Want

if TYPE_CHECKING:
    from ..policy.rules import Refusal

# why a file is fetched
NEW = "new"  # the mirror does not hold it
CHANGED = "changed"  # the mirror holds a file of that name with other content
MISSING = "missing"  # the state lists it, the disk does not have it
# why a mirrored file goes
UNSELECTED = "unselected"  # upstream still has it, the filters no longer select it
REMOVED = "removed upstream"  # upstream no longer lists it
REPLACED = "replaced"  # upstream lists other content under its name
QUARANTINED = "quarantined"  # PEP 792: upstream offers no files of the project

Job = tuple[UpstreamFile, Optional[MirroredFile]]
Select = Callable[[ProjectPage, Optional[Want]], tuple[list[UpstreamFile], list[str]]]
Refuse = Callable[[ProjectPage, Optional[Want]], "list[tuple[UpstreamFile, Refusal]]"]


def select_all(page: ProjectPage, want: Optional[Want]) -> tuple[list[UpstreamFile], list[str]]:
    """A selection that keeps every file (no filters), for examples and tests."""
    files = sorted(page.files, key=lambda f: f.filename)
    return files, sorted({f.version for f in files if f.version})


@dataclass(frozen=True)
class ProjectPlan:
    """What one run does to one project. Every selected upstream file is either fetched or kept,
    every mirrored file either kept or deleted; no file is in two places."""

    canonical: str
    fetch: tuple[tuple[UpstreamFile, str], ...]  # (file, why), biggest known first
    keep: tuple[tuple[UpstreamFile, MirroredFile], ...]  # (upstream's entry, the mirror's copy)
    delete: tuple[tuple[MirroredFile, str], ...]  # (file, why)
    versions: tuple[str, ...]  # the PEP 700 versions list to publish
    refused: tuple[tuple[UpstreamFile, Refusal], ...] = ()  # what the policy keeps out (held, blocked)

    @property
    def matures(self) -> Optional[float]:
        """When the earliest refusal lifts by itself (a cooldown ends): the next run after it
        looks at the project again even if upstream did not change. POSIX seconds, or None."""
        times = [r.matures.timestamp() for _f, r in self.refused if r.matures is not None]
        return min(times) if times else None

    def jobs(self) -> list[Job]:
        """The files the project's pages will list, each with the mirror's copy when there is
        one: the fetches first, biggest first (so that a big file does not start last and make
        the run's tail), then what is kept."""
        return [(f, None) for f, _why in self.fetch] + [(f, old) for f, old in self.keep]

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size or 0 for f, _why in self.fetch)

    def fetch_report(self) -> list[dict[str, object]]:
        return [{"project": self.canonical, "filename": f.filename, "size": f.size, "reason": why} for f, why in self.fetch]

    def delete_report(self) -> list[dict[str, object]]:
        return [{"project": self.canonical, "path": f.path, "size": f.size, "reason": why} for f, why in self.delete]

    def refused_report(self) -> list[dict[str, object]]:
        return [refusal_entry(self.canonical, f, r) for f, r in self.refused]


def refusal_entry(project: str, f: UpstreamFile, r: Refusal) -> dict[str, object]:
    """One held or blocked file, as the reports list it."""
    entry: dict[str, object] = {"project": project, "filename": f.filename, "version": f.version, "kind": r.kind, "rule": r.rule}
    if r.advisory is not None:
        entry["advisory"] = r.advisory
    if r.matures is not None:
        entry["matures"] = r.matures.strftime("%Y-%m-%dT%H:%M:%SZ")
    entry["detail"] = r.detail
    return entry


def _refusal_reason(r: Refusal) -> str:
    if r.kind == "blocked":
        return f"blocked by {r.advisory}" if r.advisory else "blocked"
    return f"held ({r.rule})"


def match_previous(selected: Sequence[UpstreamFile], previous: Sequence[MirroredFile]) -> list[Job]:
    """Pair each selected file with the mirrored file it is: same name and sha256 (same name,
    when upstream gives no hash)."""
    by_key = {(f.filename, f.sha256): f for f in previous}
    by_name = {f.filename: f for f in previous}
    return [(f, by_key.get((f.filename, f.sha256)) if f.sha256 else by_name.get(f.filename)) for f in selected]


def plan_project(
    page: ProjectPage,
    want: Optional[Want],
    previous: Sequence[MirroredFile],
    select: Select,
    on_disk: Optional[Container[str]] = None,
    refuse: Optional[Refuse] = None,
) -> ProjectPlan:
    """The plan for one project.

    `select` is the selection (`Selector.select`: filters, wants, `latest`); `previous` the files
    the state lists for the project; `on_disk` the paths of those that are really there (None:
    all of them). A listed file missing from disk is fetched again, which the dry run then
    reports too. `refuse` (`Selector.refusals`) tells what the policy keeps out, and why.
    """
    selected, versions = select(page, want)
    fetch: list[tuple[UpstreamFile, str]] = []
    keep: list[tuple[UpstreamFile, MirroredFile]] = []
    seen: set[str] = set()
    accounted: set[str] = set()  # mirrored paths the new pages list again (kept, or fetched anew in place)
    held_names = {f.filename for f in previous}
    for f, old in match_previous(selected, previous):
        if f.filename in seen:  # upstream lists a name twice: the first entry is the file
            continue
        seen.add(f.filename)
        if old is None:
            fetch.append((f, CHANGED if f.filename in held_names else NEW))
            continue
        accounted.add(old.path)
        if on_disk is None or old.path in on_disk:
            keep.append((f, old))
        else:
            fetch.append((f, MISSING))
    fetch.sort(key=lambda item: (-(item[0].size or 0), item[0].filename))
    refused = tuple(refuse(page, want)) if refuse is not None else ()
    refused_why = {f.filename: _refusal_reason(r) for f, r in refused}
    quarantined = page.status is not None and page.status.get("status") == "quarantined"
    listed = {f.filename: f.sha256 for f in page.files}
    delete: list[tuple[MirroredFile, str]] = []
    for old in previous:
        if old.path in accounted:
            continue
        if quarantined:
            why = QUARANTINED
        elif old.filename in refused_why:
            why = refused_why[old.filename]
        elif old.filename not in listed:
            why = REMOVED
        elif listed[old.filename] and listed[old.filename] != old.sha256:
            why = REPLACED
        else:
            why = UNSELECTED
        delete.append((old, why))
    return ProjectPlan(page.canonical, tuple(fetch), tuple(keep), tuple(delete), tuple(versions), refused)
