"""Exceptions that the CLI turns into one clear sentence and an exit code."""
from __future__ import annotations

# Exit codes that are no error's: a run that ended (0), one that ended and reports problems it found
# or could not fix (1: failures, damage), and one stopped by a signal (128 + its number, as a shell
# reports it). An error's own code is its class's `exit_code` below.
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_INTERRUPTED = 130  # SIGINT: Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM: systemd stopping the unit, cron's timeout


class MirrorSyncError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class ConfigError(MirrorSyncError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class LocalPackageError(MirrorSyncError):
    """One of the organisation's own distributions (the `local:` directory, `mirror-sync add`)
    is not a valid wheel or sdist, or clashes with a file already there."""

    exit_code = 2


class AdvisoryError(MirrorSyncError):
    """The advisory export (`advisories`: an OSV zip or directory) is missing, too large or
    malformed: the run stops rather than mirror with a partial view of the advisories."""

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


class HttpStatusError(UpstreamError):
    """Upstream answered an HTTP error (after the HTTP layer's own retries, for 429 and 5xx)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(HttpStatusError):
    """Upstream answered 404: the project (or file) is not there."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message, status)


class TooLargeError(UpstreamError):
    """A page or file is larger than allowed (or than advertised), counted once decoded."""


class HostileDataError(UpstreamError):
    """Upstream data tried something unsafe (path traversal, bad names)."""


class IntegrityError(UpstreamError):
    """Downloaded bytes do not match the advertised size or hash (worth another try)."""


class IncompleteError(IntegrityError):
    """The answer broke off midway (a reset, a truncated body): worth another try."""
