"""Which projects a run deletes, and the guard that stops a run from emptying the mirror.

Pure: the run and the dry run call the same function with what they learnt.
"""
from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass

from ..errors import DeleteGuardError


@dataclass(frozen=True)
class Deletions:
    """Projects the mirror holds that go: upstream deleted them, or the filters no longer want them."""

    gone_upstream: tuple[str, ...]
    unselected: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return sorted(self.gone_upstream + self.unselected)


def plan_deletions(
    held: Sequence[str],
    gone: Container[str],
    wanted: Container[str],
    failed: Container[str],
    *,
    delete_gone: bool,
    closure_complete: bool,
) -> Deletions:
    """`held`: the projects the mirror holds; `gone`: those upstream no longer has; `wanted`:
    what the configuration wants of upstream's; `failed`: projects this run could not read.
    A failed project is never deleted for being unselected, and an allowlist whose closure is
    incomplete (`closure_complete` False) deletes nothing for that reason: it did not reach
    everything it would keep."""
    gone_upstream = tuple(n for n in held if n in gone) if delete_gone else ()
    unselected: tuple[str, ...] = ()
    if closure_complete:
        unselected = tuple(n for n in held if n not in gone and n not in wanted and n not in failed)
    return Deletions(gone_upstream, unselected)


def guard_deletions(
    deletions: Deletions, held: int, *, root_empty: bool, max_ratio: float, allow_mass_delete: bool
) -> None:
    """Raise DeleteGuardError when the deletions look like an upstream outage rather than intent."""
    count = len(deletions.names)
    if not count or allow_mass_delete:
        return
    if root_empty and held:
        raise DeleteGuardError(
            f"upstream's root index lists no projects while the mirror holds {held}; refusing to delete "
            "them all (an upstream outage?); run with --allow-mass-delete if this is intended"
        )
    share = count / held
    if share > max_ratio:
        raise DeleteGuardError(
            f"this run would delete {count} of {held} projects ({share:.0%}), more than "
            f"max_delete_ratio {max_ratio:.0%}; refusing (run with --allow-mass-delete if this is intended)"
        )


def guard_policy(
    files: Iterable[tuple[str, str | None, str | None]],
    refused: Callable[[str, str | None, str | None], bool],
    *,
    max_ratio: float,
) -> None:
    """The deletion guard for the policy: `files` are the mirror's (project, version,
    upload-time), `refused` the policy's verdict on one; more than `max_ratio` of them refused
    (an export that names everything, a cooldown over an upstream without upload times) raises
    DeleteGuardError before anything changes."""
    total = doomed = 0
    for project, version, upload_time in files:
        total += 1
        if refused(project, version, upload_time):
            doomed += 1
    share = doomed / total if total else 0.0
    if share > max_ratio:
        raise DeleteGuardError(
            f"the policy would take {doomed} of the mirror's {total} files out ({share:.0%}), more than "
            f"max_delete_ratio {max_ratio:.0%}; refusing (check the advisory export and the "
            "cooldown settings, or run with --allow-mass-delete if this is intended)"
        )
