"""Stream files from upstream: to a temp file beside the target, hashed while written, checked
against the advertised sha256 and size, optionally fsynced, then renamed into place."""
from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests

from .errors import IntegrityError, UpstreamError
from .fsutil import raise_if_full
from .http import HttpClient
from .names import package_path
from .upstream import _short

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
SMALL_FILE = 1024 * 1024  # read in one piece up to this size
HARD_SIZE_CAP = 64 * 1024**3  # no single file is bigger than this; a stream that is, is hostile


@dataclass
class Fetched:
    path: str  # relative to web/
    size: int
    sha256: str
    data: Optional[bytes]  # the bytes, when the file was small enough to be read in one piece
    adopted: bool = False  # already on disk from an interrupted run, not downloaded


class Downloader:
    def __init__(self, client: HttpClient, web: Path, *, retries: int, fsync: bool, max_file_size: Optional[int]) -> None:
        self.client = client
        self.web = web
        self.retries = retries
        self.fsync = fsync
        self.max_file_size = max_file_size
        self.incoming = web / "packages" / ".incoming"
        self._incoming_ready = False

    def fetch(self, url: str, filename: str, sha256: Optional[str], size: Optional[int]) -> Fetched:
        """Download one distribution file into its content-addressed place under web/."""
        if sha256 is not None:
            rel = package_path(sha256, filename)
            target = self.web / rel
            if target.is_file():  # left by an interrupted run: adopt it only if its bytes are right
                have_size, have_sha = hash_file(target)
                if have_sha == sha256 and (size is None or have_size == size):
                    return Fetched(rel, have_size, have_sha, None, adopted=True)
        if not self._incoming_ready:
            self.incoming.mkdir(parents=True, exist_ok=True)
            self._incoming_ready = True
        got_size, got_sha, tmp, data = self._stream_with_retries(url, filename, self.incoming, sha256, size)
        rel = package_path(got_sha, filename)
        target = self.web / rel
        try:
            os.makedirs(target.parent, exist_ok=True)
            os.replace(tmp, target)
        except OSError as exc:
            _unlink(tmp)
            raise_if_full(exc, target)
            raise
        return Fetched(rel, got_size, got_sha, data)

    def fetch_bytes(self, url: str, what: str, sha256: Optional[str], limit: int = 64 * 1024 * 1024) -> bytes:
        """A small document (a .metadata file), checked against its sha256 when one is given."""
        last: Optional[Exception] = None
        for attempt in range(self.retries + 1):
            try:
                with self.client.get(url, stream=True) as response:
                    if response.status_code >= 400:
                        raise UpstreamError(f"{what}: upstream answered HTTP {response.status_code}")
                    data = bytearray()
                    for chunk in response.iter_content(CHUNK):
                        data.extend(chunk)
                        if len(data) > limit:
                            raise IntegrityError(f"{what}: larger than {limit} bytes")
                data_bytes = bytes(data)
                if sha256 is not None and hashlib.sha256(data_bytes).hexdigest() != sha256:
                    raise IntegrityError(f"{what}: sha256 does not match what upstream advertises")
                return data_bytes
            except (requests.RequestException, IntegrityError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(min(0.25 * 2**attempt, 5.0))
        if isinstance(last, IntegrityError):
            raise last
        raise UpstreamError(f"{what}: download failed ({_short(last) if last else 'unknown'})")

    def _stream_with_retries(
        self, url: str, filename: str, tmp_dir: Path, sha256: Optional[str], size: Optional[int]
    ) -> tuple[int, str, Path, Optional[bytes]]:
        last: Optional[Exception] = None
        for attempt in range(self.retries + 1):
            try:
                return self._stream(url, filename, tmp_dir, sha256, size)
            except (requests.RequestException, IntegrityError, UpstreamError) as exc:
                last = exc
                if isinstance(exc, UpstreamError) and not isinstance(exc, IntegrityError) and "HTTP 404" in str(exc):
                    break
                if attempt < self.retries:
                    time.sleep(min(0.25 * 2**attempt, 5.0))
        if isinstance(last, (IntegrityError, UpstreamError)):
            raise last
        raise UpstreamError(f"file {filename}: download failed ({_short(last) if last else 'unknown'})")

    def _stream(self, url: str, filename: str, tmp_dir: Path, sha256: Optional[str], size: Optional[int]) -> tuple[int, str, Path, Optional[bytes]]:
        cap = size if size is not None else (self.max_file_size or HARD_SIZE_CAP)
        tmp = tmp_dir / f"{filename}.{uuid.uuid4().hex[:12]}"
        small = size is not None and size <= SMALL_FILE
        digest = hashlib.sha256()
        written = 0
        body: Optional[bytes] = None
        try:
            with self.client.get(url, stream=not small) as response:
                if response.status_code >= 400:
                    raise UpstreamError(f"file {filename}: upstream answered HTTP {response.status_code}")
                with open(tmp, "wb") as fh:
                    # small files (most wheels) in one read; large ones streamed, never held in memory
                    if small:
                        body = response.content
                    chunks = (body,) if body is not None else response.iter_content(CHUNK)
                    for chunk in chunks:
                        written += len(chunk)
                        if written > cap:
                            raise IntegrityError(f"file {filename}: more bytes than the {cap} upstream advertises")
                        digest.update(chunk)
                        fh.write(chunk)
                    if self.fsync:
                        fh.flush()
                        os.fsync(fh.fileno())
            got = digest.hexdigest()
            if size is not None and written != size:
                raise IntegrityError(f"file {filename}: got {written} bytes, upstream advertises {size}")
            if sha256 is not None and got != sha256:
                raise IntegrityError(f"file {filename}: sha256 does not match what upstream advertises")
            return written, got, tmp, body
        except OSError as exc:
            _unlink(tmp)
            raise_if_full(exc, tmp)
            raise
        except BaseException:
            _unlink(tmp)
            raise


def hash_file(path: Path) -> tuple[int, str]:
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


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
