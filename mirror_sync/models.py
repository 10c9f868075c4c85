"""Plain data passed between the upstream reader, the selection, the state and the renderer."""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Optional, Union


@dataclass
class UpstreamFile:
    """One distribution file as upstream advertises it (already validated)."""

    filename: str
    url: str  # absolute
    sha256: Optional[str]
    size: Optional[int] = None
    requires_python: Optional[str] = None
    yanked: Union[bool, str] = False  # False, True, or the reason
    upload_time: Optional[str] = None
    metadata: bool = False  # upstream advertises a PEP 658 .metadata file
    metadata_sha256: Optional[str] = None
    version: Optional[str] = None  # parsed from the filename, None when it cannot be
    provenance: str | None = None  # PEP 740: the absolute http(s) URL of its provenance, when upstream gives one
    local: bool = False  # a file of the organisation's own (the `local` directory): no policy applies to it


@dataclass
class ProjectPage:
    """A project's page as read from upstream."""

    name: str  # the display name upstream gives
    canonical: str
    serial: Optional[int]
    files: list[UpstreamFile]
    versions: Optional[list[str]] = None  # PEP 700, when upstream gives it
    status: Optional[dict[str, str]] = None  # PEP 792 project-status
    fingerprint: Optional[str] = None  # sha256 of the page body (for HTML-only upstreams without serials)
    conflicts: list[str] = field(default_factory=list)  # filenames listed twice with different hashes (not mirrored)
    etag: Optional[str] = None  # upstream's validators, for a conditional request next time
    last_modified: Optional[str] = None
    local: bool = False  # the project is the organisation's own: its page comes from the `local` directory


class RootProjects(Mapping[str, tuple[str, Optional[int]]]):
    """The root's projects: canonical name -> (display name, serial or None), read-only.

    Packed for a root of 700,000 projects: the canonical names in one string ("\n" after each),
    the display names in another (empty where a name is its canonical form), their offsets and
    the serials in arrays, and an open-addressing hash table of positions. About 60 bytes a
    project, where a dict of tuples takes about 300. Build one with RootProjectsBuilder (names
    already validated: letters, digits, "-", "_", "."), or from_items().
    """

    __slots__ = ("_dead", "_display_at", "_displays", "_mask", "_name_at", "_names", "_serials", "_table")

    _WINDOW = 4096  # names materialised at a time while iterating

    def __init__(self) -> None:
        self._names = ""
        self._name_at = array("q", [0])  # start of each name, then one past the last
        self._displays = ""
        self._display_at = array("q", [0])
        self._serials = array("q")  # -1: no serial
        self._table = array("i", [-1])
        self._mask = 0
        self._dead: frozenset[int] = frozenset()  # positions a later duplicate replaced

    @classmethod
    def from_items(cls, items: Iterable[tuple[str, str, Optional[int]]]) -> RootProjects:
        """From (canonical, display, serial) triples; a later duplicate replaces an earlier one."""
        builder = RootProjectsBuilder()
        canonicals: list[str] = []
        displays: list[str] = []
        serials: list[Optional[int]] = []
        for canonical, display, serial in items:
            canonicals.append(canonical)
            displays.append(display)
            serials.append(serial)
        builder.add(canonicals, displays, serials)
        return builder.build()

    def _find(self, key: object) -> int:
        if type(key) is not str:
            return -1
        table, mask, name_at, names = self._table, self._mask, self._name_at, self._names
        size = len(key)
        slot = hash(key) & mask
        while True:
            pos = table[slot]
            if pos < 0:
                return -1
            start = name_at[pos]
            if name_at[pos + 1] - start - 1 == size and names.startswith(key, start):
                return pos
            slot = (slot + 1) & mask

    def __contains__(self, key: object) -> bool:
        return self._find(key) >= 0

    def __getitem__(self, key: str) -> tuple[str, Optional[int]]:
        pos = self._find(key)
        if pos < 0:
            raise KeyError(key)
        display = self._displays[self._display_at[pos] : self._display_at[pos + 1] - 1]
        serial = self._serials[pos]
        return (display or key, serial if serial >= 0 else None)

    def __len__(self) -> int:
        return len(self._serials) - len(self._dead)

    def _windows(self) -> Iterator[tuple[int, list[str]]]:
        """(position of the first, names) for _WINDOW names at a time, dead positions included."""
        names, name_at = self._names, self._name_at
        count = len(self._serials)
        for first in range(0, count, self._WINDOW):
            last = min(first + self._WINDOW, count)
            yield first, names[name_at[first] : name_at[last] - 1].split("\n")

    def __iter__(self) -> Iterator[str]:
        dead = self._dead
        for first, window in self._windows():
            if dead:
                yield from (n for i, n in enumerate(window, first) if i not in dead)
            else:
                yield from window

    def with_serials(self) -> Iterator[tuple[str, Optional[int]]]:
        """(canonical name, serial or None) in order: what iterating and looking each name up
        gives, without a hash lookup per project (on a 700,000-project root, seconds of CPU)."""
        serials, dead = self._serials, self._dead
        for first, window in self._windows():
            for i, name in enumerate(window, first):
                if dead and i in dead:
                    continue
                serial = serials[i]
                yield name, (serial if serial >= 0 else None)

    def __repr__(self) -> str:
        return f"RootProjects({len(self)} projects)"


class RootProjectsBuilder:
    """Collects the root's projects batch by batch, then packs them into a RootProjects."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._displays: list[str] = []
        self._name_at = array("q", [0])  # always one more entry than names: the end offset
        self._display_at = array("q", [0])
        self._serials = array("q")

    def add(self, canonicals: Sequence[str], displays: Sequence[str], serials: Sequence[Optional[int]]) -> None:
        """One batch: canonical names (valid, so without "\\n"), their display names and serials."""
        if not (len(canonicals) == len(displays) == len(serials)):
            raise ValueError("canonicals, displays and serials differ in length")
        if not canonicals:
            return
        names = "\n".join(canonicals) + "\n"
        shown = [d if d != c else "" for d, c in zip(displays, canonicals)]
        shown_text = "\n".join(shown) + "\n"
        if names.count("\n") != len(canonicals) or shown_text.count("\n") != len(shown):
            raise ValueError("a project name contains a newline")
        self._names.append(names)
        self._displays.append(shown_text)
        one_more = (1).__add__  # each name is followed by its "\n"
        end = self._name_at.pop()
        self._name_at.extend(accumulate(map(one_more, map(len, canonicals)), initial=end))
        end = self._display_at.pop()
        self._display_at.extend(accumulate(map(one_more, map(len, shown)), initial=end))
        self._serials.extend([-1 if s is None else s for s in serials])

    def build(self) -> RootProjects:
        """The packed mapping (the builder is spent)."""
        out = RootProjects()
        out._names = "".join(self._names)
        self._names.clear()
        out._displays = "".join(self._displays)
        self._displays.clear()
        out._name_at, out._display_at, out._serials = self._name_at, self._display_at, self._serials
        count = len(out._serials)
        size = 8
        while size < 2 * count:  # load factor <= 1/2: short probe sequences
            size *= 2
        table = array("i", [-1]) * size
        mask = size - 1
        names, name_at = out._names, out._name_at
        dead: set[int] = set()
        window_size = RootProjects._WINDOW
        for first in range(0, count, window_size):
            last = min(first + window_size, count)
            for pos, key in enumerate(names[name_at[first] : name_at[last] - 1].split("\n"), first):
                slot = hash(key) & mask
                while True:
                    other = table[slot]
                    if other < 0:
                        table[slot] = pos
                        break
                    start = name_at[other]
                    if name_at[other + 1] - start - 1 == len(key) and names.startswith(key, start):
                        table[slot] = pos  # a duplicate: the later entry wins, as in a dict
                        dead.add(other)
                        break
                    slot = (slot + 1) & mask
        out._table, out._mask, out._dead = table, mask, frozenset(dead)
        return out


@dataclass
class RootIndex:
    """The upstream's project list. Serials are None for HTML-only upstreams."""

    serial: Optional[int]
    projects: RootProjects = field(default_factory=RootProjects)  # canonical -> (display name, serial)
    json: bool = True
    unchanged: bool = False  # the root's serial is the one the mirror completed: projects not read


@dataclass
class MirroredFile:
    """A file the mirror holds (a row of the state)."""

    project: str
    filename: str
    path: str  # relative to web/, e.g. packages/ab/cd/<rest>/<filename>
    url: str
    size: int
    sha256: str
    requires_python: Optional[str]
    yanked: Union[bool, str]
    upload_time: Optional[str]
    metadata_sha256: Optional[str]  # set when <path>.metadata is on disk
    metadata_size: Optional[int]
    version: Optional[str]
    requires_dist: Optional[list[str]] = None  # from core metadata, when known
    mtime_ns: int = 0
    provenance_url: str | None = None  # PEP 740: the absolute URL of our copy of its provenance, to publish
    provenance_sha256: str | None = None  # set when <path>.provenance (upstream's document) is on disk
