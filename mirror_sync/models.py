"""Plain data passed between the upstream reader, the selection, the state and the renderer."""
from __future__ import annotations

from dataclasses import dataclass, field
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
    etag: Optional[str] = None  # upstream's validators, for a conditional request next time
    last_modified: Optional[str] = None


@dataclass
class RootIndex:
    """The upstream's project list. Serials are None for HTML-only upstreams."""

    serial: Optional[int]
    projects: dict[str, tuple[str, Optional[int]]] = field(default_factory=dict)  # canonical -> (name, serial)
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
