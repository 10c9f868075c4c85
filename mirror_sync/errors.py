"""Exceptions that the CLI turns into one clear sentence and an exit code."""
from __future__ import annotations


class MirrorSyncError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class ConfigError(MirrorSyncError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class LockedError(MirrorSyncError):
    """Another run holds the mirror's lock."""

    exit_code = 3


class DeleteGuardError(MirrorSyncError):
    """A run would delete more of the mirror than the guard allows."""

    exit_code = 4


class FilesystemError(MirrorSyncError):
    """The mirror directory is on a filesystem we refuse to use, or the disk is full."""

    exit_code = 5


class UpstreamError(MirrorSyncError):
    """Upstream answered with something unusable (HTTP error, malformed data, bad hash)."""


class NotFoundError(UpstreamError):
    """Upstream answered 404: the project (or file) is not there."""


class TooLargeError(UpstreamError):
    """A page or file is larger than allowed (or than advertised), counted once decoded."""


class HostileDataError(UpstreamError):
    """Upstream data tried something unsafe (path traversal, bad names)."""


class IntegrityError(UpstreamError):
    """Downloaded bytes do not match the advertised size or hash."""
