"""Dependency closure: which projects the selected files' Requires-Dist pull in."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Protocol

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .selection import Want

log = logging.getLogger(__name__)


class DependencyEvaluator:
    """Evaluates Requires-Dist lines for every target marker environment and requested extra."""

    def __init__(self, marker_envs: list[dict[str, str]]) -> None:
        self.marker_envs = marker_envs
        self._cache: dict[tuple[str, frozenset[str]], Optional[Requirement]] = {}

    def needed(self, requires_dist: Iterable[str], extras: frozenset[str]) -> list[Requirement]:
        out: list[Requirement] = []
        for line in requires_dist:
            key = (line, extras)
            if key not in self._cache:
                self._cache[key] = self._evaluate(line, extras)
            req = self._cache[key]
            if req is not None:
                out.append(req)
        return out

    def _evaluate(self, line: str, extras: frozenset[str]) -> Optional[Requirement]:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            log.warning("event=bad-requirement requirement=%r", line)
            return None
        if req.url:
            return None  # direct references cannot be mirrored from an index
        if req.marker is None:
            return req
        for env in self.marker_envs:
            for extra in ("", *sorted(extras)):
                try:
                    if req.marker.evaluate({**env, "extra": extra}):
                        return req
                except UndefinedEnvironmentName:
                    continue
        return None


@dataclass(frozen=True)
class Visit:
    """What visiting one project under its current want found: the Requires-Dist lines of the
    files selected for that want, or that upstream has no such project, or another error."""

    requires: tuple[str, ...] = ()
    missing: bool = False
    error: Optional[str] = None


@dataclass
class Closure:
    """The dependency closure of an allowlist: what is wanted of each project, and why."""

    wants: dict[str, Want]
    required_by: dict[str, str] = field(default_factory=dict)  # dependency -> a project that pulls it in (the first by name)
    failures: dict[str, str] = field(default_factory=dict)  # project -> one sentence
    rounds: int = 0  # visits made


class Visitor(Protocol):
    """Visits projects concurrently: `submit` starts one, `next_done` waits for any to finish."""

    def submit(self, name: str, want: Want) -> None: ...

    def next_done(self) -> tuple[str, Visit]: ...


def walk(
    requirements: Iterable[Requirement],
    visitor: Visitor,
    needed: Callable[[Iterable[str], frozenset[str]], list[Requirement]],
    *,
    excluded: Callable[[str], bool] = lambda name: False,
    follow: bool = True,
    max_visits: int = 1_000_000,
) -> Closure:
    """The least fixpoint of "a project's want includes every requirement on it of the files
    selected for its dependents' wants", starting from the allowlist.

    The visitor is the only I/O: it reads pages, metadata or files as it must and reports the
    Requires-Dist lines of the files a want selects. Work flows without rounds: a project's
    dependencies are submitted as soon as its visit is done, and a project whose want widened
    while it was being visited is visited again. Wants only ever widen and selection is
    monotone in the want, so the result depends on upstream's content and the configuration
    only, not on the order in which visits finish: two runs over the same upstream agree.
    """
    wants: dict[str, Want] = {}
    allowlisted: list[str] = []
    for req in requirements:
        name: str = canonicalize_name(req.name)
        if excluded(name):
            continue
        wants.setdefault(name, Want()).add(req)
        if name not in allowlisted:
            allowlisted.append(name)
    closure = Closure(wants)
    in_flight: set[str] = set()
    stale: set[str] = set()  # widened while in flight: visit again when it comes back
    missing: set[str] = set()

    def submit(name: str) -> None:
        in_flight.add(name)
        closure.rounds += 1
        visitor.submit(name, wants[name].copy())

    for name in allowlisted:
        submit(name)
    while in_flight:
        name, visit = visitor.next_done()
        in_flight.discard(name)
        if visit.missing:
            missing.add(name)
        elif visit.error is not None:
            closure.failures[name] = visit.error
        else:
            closure.failures.pop(name, None)
            if follow:
                # what a narrower want selected, a wider one selects too: these are wanted either way
                for dep in needed(visit.requires, frozenset(wants[name].extras)):
                    dep_name: str = canonicalize_name(dep.name)
                    if excluded(dep_name):
                        continue
                    if name < closure.required_by.get(dep_name, "\uffff"):
                        closure.required_by[dep_name] = name  # one of its dependents, whatever the order
                    if wants.setdefault(dep_name, Want()).add(dep):
                        if dep_name in in_flight:
                            stale.add(dep_name)
                        elif closure.rounds < max_visits:
                            submit(dep_name)
                        else:
                            closure.failures[dep_name] = f"project {dep_name}: the dependency closure did not settle within {max_visits} visits"
        if name in stale:
            stale.discard(name)
            submit(name)
    for name in sorted(missing):
        closure.failures[name] = (
            f"project {name!r} from 'projects' is not on upstream"
            if name in allowlisted
            else f"dependency {name!r} of {closure.required_by.get(name, '?')} is not on upstream"
        )
    return closure
