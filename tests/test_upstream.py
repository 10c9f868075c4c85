"""The upstream reader's small pure parts."""
from __future__ import annotations

from mirror_sync.upstream import Validators, public_url


def test_messages_never_carry_credentials() -> None:
    assert public_url("https://user:secret@index.example.invalid/simple/") == "https://index.example.invalid/simple/"
    assert public_url("https://tok%40en@index.example.invalid:8443/s/") == "https://index.example.invalid:8443/s/"
    assert public_url("http://127.0.0.1:8080/simple/x/") == "http://127.0.0.1:8080/simple/x/"


def test_validators_become_conditional_request_headers() -> None:
    assert Validators('"abc"', "Tue, 01 Dec 2026 00:00:00 GMT").headers() == {
        "If-None-Match": '"abc"', "If-Modified-Since": "Tue, 01 Dec 2026 00:00:00 GMT"}
    assert Validators(None, None).headers() == {}


def test_names_hashes_and_filenames_are_matched_whole_and_in_ascii() -> None:
    import pytest

    from mirror_sync.errors import HostileDataError
    from mirror_sync.names import canonical_project, check_filename, check_sha256

    assert canonical_project("Zope.Interface") == "zope-interface"
    for bad in ("foo\n", "\u017fix", "\u212aelvin", "-x", "x-"):
        with pytest.raises(HostileDataError):
            canonical_project(bad)
    with pytest.raises(HostileDataError):
        check_filename("x-1.0-py3-none-any.whl\n")
    with pytest.raises(HostileDataError):
        check_sha256("a" * 64 + "\n")
