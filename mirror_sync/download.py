"""Stream files from upstream: to a temp file beside the target, hashed while written, checked
against the advertised sha256 and size, optionally fsynced, then renamed into place."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar, Union

import requests

from .errors import (
    HostileDataError,
    HttpStatusError,
    IncompleteError,
    IntegrityError,
    NotFoundError,
    TooLargeError,
    UpstreamError,
)
from .fsutil import TempNames, make_dirs, raise_if_full, write_file
from .http import DeadlineExceeded, HttpClient, HttpResponse, iter_capped
from .names import package_path
from .upstream import _short, public_url

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CHUNK = 256 * 1024
SMALL_FILE = 256 * 1024  # read in one piece up to this size (one chunk); larger files stream to disk
HARD_SIZE_CAP = 64 * 1024**3  # no single file is bigger than this; a stream that is, is hostile
DEADLINE_RATE = 128 * 1024  # a file gets one second beyond the deadline per this many bytes it advertises
METADATA_LIMIT = 16 * 1024 * 1024  # a core metadata document (PEP 658) is kilobytes; more is hostile
LOCAL_SCHEME = "local:"  # the URL of a file of the `local` directory: local:<absolute path> (no page yields it)


@dataclass
class Fetched:
    path: str  # relative to web/
    size: int
    sha256: str
    data: Optional[bytes]  # the bytes, when the file was small enough to be read in one piece
    mtime_ns: int
    adopted: bool = False  # already on disk from an interrupted run, not downloaded


class Downloader:
    def __init__(self, client: HttpClient, web: Path, *, retries: int, fsync: bool, max_file_size: Optional[int],
                 local_root: Optional[Path] = None) -> None:
        self.client = client
        self.local_root = None if local_root is None else os.path.realpath(local_root)
        self.web = web
        self.retries = retries
        self.fsync = fsync
        self.max_file_size = max_file_size
        self.web_s = os.fspath(web)
        self.incoming = os.path.join(os.path.dirname(self.web_s), ".incoming")  # beside web/: never served
        self._incoming_ready = False
        self.names = TempNames()

    def fetch(self, url: str, filename: str, sha256: Optional[str], size: Optional[int]) -> Fetched:
        """Download one distribution file into its content-addressed place under web/."""
        if sha256 is not None:
            rel = package_path(sha256, filename)
            target = os.path.join(self.web_s, rel)
            if os.path.isfile(target):  # left by an interrupted run: adopt it only if its bytes are right
                have_size, have_sha = hash_file(target)
                if have_sha == sha256 and (size is None or have_size == size):
                    return Fetched(rel, have_size, have_sha, None, os.stat(target).st_mtime_ns, adopted=True)
        if not self._incoming_ready:
            os.makedirs(self.incoming, exist_ok=True)
            self._incoming_ready = True
        if url.startswith(LOCAL_SCHEME):
            got_size, got_sha, tmp, data, mtime_ns = self._copy_local(url[len(LOCAL_SCHEME):], filename, sha256, size)
        else:
            got_size, got_sha, tmp, data, mtime_ns = self._stream_with_retries(url, filename, sha256, size)
        rel = package_path(got_sha, filename)
        target = os.path.join(self.web_s, rel)
        try:
            make_dirs(os.path.dirname(target))
            os.replace(tmp, target)
        except OSError as exc:
            _unlink(tmp)
            raise_if_full(exc, Path(target))
            raise
        return Fetched(rel, got_size, got_sha, data, mtime_ns)

    def fetch_bytes(self, url: str, what: str, sha256: Optional[str], limit: int = METADATA_LIMIT) -> bytes:
        """A small document (a .metadata file), checked against its sha256 when one is given."""

        def once() -> bytes:
            with self._get(url, what, self.client.deadline) as response:
                data = b"".join(_body(iter_capped(response, limit, what, CHUNK), what))
            if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
                raise IntegrityError(f"{what}: sha256 does not match what upstream advertises")
            return bytes(data)

        return self._retrying(once)

    def _stream_with_retries(
        self, url: str, filename: str, sha256: Optional[str], size: Optional[int]
    ) -> tuple[int, str, str, Optional[bytes], int]:
        return self._retrying(lambda: self._stream(url, filename, sha256, size))

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """One retry policy: the HTTP layer retries connections, timeouts, 429 and 5xx (with
        backoff, Retry-After honoured); here only bytes that arrived wrong or incomplete are
        fetched again."""
        for n in range(self.retries + 1):
            try:
                return attempt()
            except TooLargeError:
                raise
            except IntegrityError:
                if n == self.retries:
                    raise
                time.sleep(min(0.25 * 2**n, 5.0))
        raise AssertionError("unreachable")

    @contextmanager
    def _get(self, url: str, what: str, deadline: float) -> Iterator[HttpResponse]:
        """The response, or one sentence: what upstream answered, or why no answer came."""
        try:
            with self.client.get(url, stream=True, deadline=deadline) as response:
                if response.status_code == 404:
                    raise NotFoundError(f"{what}: not found on upstream ({public_url(url)} answered 404)")
                if response.status_code >= 400:
                    raise HttpStatusError(f"{what}: upstream answered HTTP {response.status_code} ({public_url(url)})",
                                          response.status_code)
                yield response
        except DeadlineExceeded as exc:
            raise UpstreamError(f"{what}: download failed ({exc})") from None
        except requests.RequestException as exc:
            raise UpstreamError(f"{what}: download failed ({_short(exc)})") from None

    def _stream(self, url: str, filename: str, sha256: Optional[str], size: Optional[int]) -> tuple[int, str, str, Optional[bytes], int]:
        """Into a temp file in .incoming: (size, sha256, temp path, the bytes when small, mtime_ns).
        Bytes are counted as they are decoded, against the size upstream advertises."""
        what = f"file {filename}"
        cap = size if size is not None else (self.max_file_size or HARD_SIZE_CAP)
        tmp = os.path.join(self.incoming, f"{filename}.{self.names.next()}")
        small = size is not None and size <= SMALL_FILE
        digest = hashlib.sha256()
        written = 0
        data: Optional[bytes] = None
        try:
            with self._get(url, what, self.client.deadline + (size or 0) / DEADLINE_RATE) as response:
                if small:
                    # most wheels: read into memory (a compressed answer cannot inflate past the
                    # advertised size), checked before anything is written, then one write
                    parts = []
                    for chunk in _body(response.iter_content(CHUNK), what):
                        written += len(chunk)
                        if written > cap:
                            raise IntegrityError(f"{what}: more bytes than the {cap} upstream advertises")
                        parts.append(chunk)
                    data = b"".join(parts)
                    digest.update(data)
                    self._check(filename, written, digest.hexdigest(), cap, sha256, size)
                    mtime_ns = write_file(tmp, data, exclusive=True, fsync=self.fsync)
                    return written, digest.hexdigest(), tmp, data, mtime_ns
                with open(tmp, "wb") as fh:  # large ones streamed, never held in memory
                    for chunk in _body(response.iter_content(CHUNK), what):
                        written += len(chunk)
                        if written > cap:
                            raise IntegrityError(f"{what}: more bytes than the {cap} upstream advertises")
                        digest.update(chunk)
                        fh.write(chunk)
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
                    mtime_ns = os.fstat(fh.fileno()).st_mtime_ns  # the rename keeps it
            got = digest.hexdigest()
            self._check(filename, written, got, cap, sha256, size)
            return written, got, tmp, data, mtime_ns
        except OSError as exc:
            _unlink(tmp)
            raise_if_full(exc, Path(tmp))
            raise
        except BaseException:
            _unlink(tmp)
            raise

    def _copy_local(self, source: str, filename: str, sha256: Optional[str], size: Optional[int]) -> tuple[int, str, str, Optional[bytes], int]:
        """A file of the `local` directory, copied (never linked: the mirror's copy must not change
        when someone edits the directory) into .incoming and checked against what was validated."""
        real = os.path.realpath(source)
        if self.local_root is None or os.path.commonpath([real, self.local_root]) != self.local_root:
            raise HostileDataError(f"file {filename}: {source} is not inside the local directory")
        tmp = os.path.join(self.incoming, f"{filename}.{self.names.next()}")
        digest = hashlib.sha256()
        written = 0
        try:
            with open(real, "rb") as src, open(tmp, "xb") as fh:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
                mtime_ns = os.fstat(fh.fileno()).st_mtime_ns
        except FileNotFoundError:
            _unlink(tmp)
            raise IntegrityError(f"file {filename}: {source} went away from the local directory during the run") from None
        except OSError as exc:
            _unlink(tmp)
            raise_if_full(exc, Path(tmp))
            raise
        got = digest.hexdigest()
        try:
            self._check(filename, written, got, size if size is not None else written, sha256, size)
        except IntegrityError:
            _unlink(tmp)
            raise IntegrityError(f"file {filename}: {source} changed in the local directory during the run") from None
        return written, got, tmp, None, mtime_ns

    @staticmethod
    def _check(filename: str, written: int, got: str, cap: int, sha256: Optional[str], size: Optional[int]) -> None:
        if written > cap:
            raise IntegrityError(f"file {filename}: more bytes than the {cap} upstream advertises")
        if size is not None and written != size:
            raise IntegrityError(f"file {filename}: got {written} bytes, upstream advertises {size}")
        if sha256 is not None and got != sha256:
            raise IntegrityError(f"file {filename}: sha256 does not match what upstream advertises")


def _body(chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """A body's chunks; an answer that breaks off midway is an IncompleteError (worth another
    try), a passed deadline is not."""
    try:
        yield from chunks
    except DeadlineExceeded:
        raise
    except requests.RequestException as exc:
        raise IncompleteError(f"{what}: the answer broke off ({_short(exc)})") from None


def hash_file(path: Union[str, Path]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1024 * 1024)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
